# Server outside the cluster with a reviewer JWT of a service account bound to
# system:auth-delegator (requested for the API audience).
variable "kubernetes_host" { type = string }
variable "kubernetes_ca_cert" { type = string }
variable "token_reviewer_jwt" {
  type      = string
  sensitive = true
}

module "kubernetes_auth" {
  source                           = "../../modules/kubernetes-auth"
  kubernetes_host                  = var.kubernetes_host
  kubernetes_ca_cert               = var.kubernetes_ca_cert
  token_reviewer_jwt               = var.token_reviewer_jwt
  disable_local_ca_jwt             = true
  bound_service_account_names      = ["internal-app"]
  bound_service_account_namespaces = ["default"]
  audience                         = "vault"
  policy                           = <<-EOT
    path "secret/data/app/*" {
      capabilities = ["read"]
    }
  EOT
}
