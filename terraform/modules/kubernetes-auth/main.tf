terraform {
  required_providers {
    vault = {
      source  = "hashicorp/vault"
      version = ">= 4.0"
    }
  }
}

variable "mount_path" {
  type        = string
  default     = "kubernetes"
  description = "path of the auth mount"
}

variable "kubernetes_host" {
  type        = string
  description = "API server URL as the server reaches it (inside the cluster: https://kubernetes.default.svc)"
}

variable "kubernetes_ca_cert" {
  type        = string
  default     = null
  description = "PEM of the cluster CA; required outside the cluster"
}

variable "token_reviewer_jwt" {
  type        = string
  default     = null
  sensitive   = true
  description = "token of a service account bound to system:auth-delegator (reviewer-jwt mode); must carry the API audience"
}

variable "disable_local_ca_jwt" {
  type        = bool
  default     = false
  description = "true outside the cluster: no local pod token or CA file exists there"
}

variable "role_name" {
  type    = string
  default = "app"
}

variable "bound_service_account_names" {
  type = list(string)
}

variable "bound_service_account_namespaces" {
  type = list(string)
}

variable "audience" {
  type        = string
  default     = null
  description = "audience the client's token must carry (checked before TokenReview)"
}

variable "policy_name" {
  type    = string
  default = "app"
}

variable "policy" {
  type        = string
  description = "policy HCL granted to logged-in clients"
}

resource "vault_auth_backend" "this" {
  type = "kubernetes"
  path = var.mount_path
}

resource "vault_kubernetes_auth_backend_config" "this" {
  backend              = vault_auth_backend.this.path
  kubernetes_host      = var.kubernetes_host
  kubernetes_ca_cert   = var.kubernetes_ca_cert
  token_reviewer_jwt   = var.token_reviewer_jwt
  disable_local_ca_jwt = var.disable_local_ca_jwt
}

resource "vault_policy" "this" {
  name   = var.policy_name
  policy = var.policy
}

resource "vault_kubernetes_auth_backend_role" "this" {
  backend                          = vault_auth_backend.this.path
  role_name                        = var.role_name
  bound_service_account_names      = var.bound_service_account_names
  bound_service_account_namespaces = var.bound_service_account_namespaces
  audience                         = var.audience
  token_policies                   = [vault_policy.this.name]
  token_ttl                        = 3600
}

output "accessor" {
  value = vault_auth_backend.this.accessor
}
