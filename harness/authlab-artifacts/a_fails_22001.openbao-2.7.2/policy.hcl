path "kv-r29ba6c5e4/data/allowed/*" {
  capabilities = ["read"]
}
