# Server outside the cluster, no reviewer JWT: each client's own token calls TokenReview, so the
# client's service account must be bound to system:auth-delegator and its token must carry the
# API audience.
variable "kubernetes_host" { type = string }
variable "kubernetes_ca_cert" { type = string }

module "kubernetes_auth" {
  source                           = "../../modules/kubernetes-auth"
  kubernetes_host                  = var.kubernetes_host
  kubernetes_ca_cert               = var.kubernetes_ca_cert
  disable_local_ca_jwt             = true
  bound_service_account_names      = ["internal-app"]
  bound_service_account_namespaces = ["default"]
  policy                           = <<-EOT
    path "secret/data/app/*" {
      capabilities = ["read"]
    }
  EOT
}
