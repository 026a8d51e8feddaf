storage "inmem" {}

listener "tcp" {
  address     = "127.0.0.1:34643"
  tls_disable = true
}

api_addr  = "http://127.0.0.1:34643"
log_level = "debug"

audit "file" "authlab" {
  options {
    file_path = "/tmp/authlab-r483a3db8/openbao-2.7.2/audit.log"
    log_raw   = "true"
  }
}
