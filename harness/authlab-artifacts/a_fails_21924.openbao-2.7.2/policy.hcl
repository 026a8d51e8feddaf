path "kv-r91618f744/data/allowed/*" {
  capabilities = ["read"]
}
