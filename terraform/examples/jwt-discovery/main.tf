# JWT auth through the cluster's service-account issuer discovery. Bind
# system:service-account-issuer-discovery to system:anonymous first
# (manifests/rbac/anonymous-issuer-discovery.yaml).
variable "issuer_url" { type = string }
variable "issuer_ca_pem" { type = string }

module "jwt_auth" {
  source                = "../../modules/jwt-auth"
  oidc_discovery_url    = var.issuer_url
  oidc_discovery_ca_pem = var.issuer_ca_pem
  bound_audiences       = ["vault"]
  bound_subject         = "system:serviceaccount:default:internal-app"
  policy                = <<-EOT
    path "secret/data/app/*" {
      capabilities = ["create", "update", "read"]
    }
  EOT
}
