path "kv-r5d3a092c4/data/allowed/*" {
  capabilities = ["read"]
}
