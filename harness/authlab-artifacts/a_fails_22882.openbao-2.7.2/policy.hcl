path "kv-r483a3db81/data/allowed/*" {
  capabilities = ["read"]
}
