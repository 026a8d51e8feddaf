path "kv-r90755bf64/data/allowed/*" {
  capabilities = ["read"]
}
