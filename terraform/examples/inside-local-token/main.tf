# Server inside the cluster (manifests/in-cluster/openbao.yaml): the server reviews with its own
# pod token and CA, so only the host is configured.
module "kubernetes_auth" {
  source                           = "../../modules/kubernetes-auth"
  kubernetes_host                  = "https://kubernetes.default.svc"
  bound_service_account_names      = ["internal-app"]
  bound_service_account_namespaces = ["default"]
  policy                           = <<-EOT
    path "secret/data/app/*" {
      capabilities = ["read"]
    }
  EOT
}
