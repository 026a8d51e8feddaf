path "kv-r56bfb2d62/data/allowed/*" {
  capabilities = ["read"]
}
