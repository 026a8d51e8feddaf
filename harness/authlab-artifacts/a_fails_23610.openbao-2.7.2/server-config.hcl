storage "inmem" {}

listener "tcp" {
  address     = "127.0.0.1:43253"
  tls_disable = true
}

api_addr  = "http://127.0.0.1:43253"
log_level = "debug"

audit "file" "authlab" {
  options {
    file_path = "/tmp/authlab-r5d3a092c/openbao-2.7.2/audit.log"
    log_raw   = "true"
  }
}
