path "kv-r36d7cf274/data/allowed/*" {
  capabilities = ["read"]
}
