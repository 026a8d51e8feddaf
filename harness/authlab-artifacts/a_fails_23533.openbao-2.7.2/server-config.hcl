storage "inmem" {}

listener "tcp" {
  address     = "127.0.0.1:40835"
  tls_disable = true
}

api_addr  = "http://127.0.0.1:40835"
log_level = "debug"

audit "file" "authlab" {
  options {
    file_path = "/tmp/authlab-rbf9d491f/openbao-2.7.2/audit.log"
    log_raw   = "true"
  }
}
