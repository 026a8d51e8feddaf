storage "inmem" {}

listener "tcp" {
  address     = "127.0.0.1:43591"
  tls_disable = true
}

api_addr  = "http://127.0.0.1:43591"
log_level = "debug"

audit "file" "authlab" {
  options {
    file_path = "/tmp/authlab-r36d7cf27/openbao-2.7.2/audit.log"
    log_raw   = "true"
  }
}
