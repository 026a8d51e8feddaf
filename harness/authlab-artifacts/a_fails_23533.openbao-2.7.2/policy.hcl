path "kv-rbf9d491f4/data/allowed/*" {
  capabilities = ["read"]
}
