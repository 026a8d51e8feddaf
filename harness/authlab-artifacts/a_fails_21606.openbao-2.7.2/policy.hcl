path "kv-r5782cb521/data/allowed/*" {
  capabilities = ["read"]
}
