terraform {
  required_providers {
    vault = {
      source  = "hashicorp/vault"
      version = ">= 4.0"
    }
  }
}

variable "mount_path" {
  type    = string
  default = "jwt"
}

variable "oidc_discovery_url" {
  type        = string
  default     = null
  description = "the cluster's issuer URL; the discovery document's issuer must equal it, and anonymous discovery must be bound"
}

variable "oidc_discovery_ca_pem" {
  type    = string
  default = null
}

variable "jwks_url" {
  type        = string
  default     = null
  description = "https://<api server>/openid/v1/jwks (anonymous discovery must be bound)"
}

variable "jwks_ca_pem" {
  type    = string
  default = null
}

variable "jwt_validation_pubkeys" {
  type        = list(string)
  default     = null
  description = "PEM public keys of the service-account signing key"
}

variable "bound_issuer" {
  type    = string
  default = null
}

variable "role_name" {
  type    = string
  default = "app"
}

variable "bound_audiences" {
  type = list(string)
}

variable "bound_subject" {
  type        = string
  description = "system:serviceaccount:<namespace>:<name>"
}

variable "policy_name" {
  type    = string
  default = "app"
}

variable "policy" {
  type = string
}

resource "vault_jwt_auth_backend" "this" {
  type                   = "jwt"
  path                   = var.mount_path
  oidc_discovery_url     = var.oidc_discovery_url
  oidc_discovery_ca_pem  = var.oidc_discovery_ca_pem
  jwks_url               = var.jwks_url
  jwks_ca_pem            = var.jwks_ca_pem
  jwt_validation_pubkeys = var.jwt_validation_pubkeys
  bound_issuer           = var.bound_issuer
}

resource "vault_policy" "this" {
  name   = var.policy_name
  policy = var.policy
}

resource "vault_jwt_auth_backend_role" "this" {
  backend         = vault_jwt_auth_backend.this.path
  role_name       = var.role_name
  role_type       = "jwt"
  user_claim      = "sub"
  bound_audiences = var.bound_audiences
  bound_subject   = var.bound_subject
  token_policies  = [vault_policy.this.name]
  token_ttl       = 3600
}
