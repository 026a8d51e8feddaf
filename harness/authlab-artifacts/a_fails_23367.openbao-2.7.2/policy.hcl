path "kv-ra8fd1b934/data/allowed/*" {
  capabilities = ["read"]
}
