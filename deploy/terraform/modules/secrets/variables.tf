variable "name" {
  type        = string
  description = "Name prefix; the secrets are <name>/app and <name>/mqtt-tls."
}

variable "secret_prefix" {
  type        = string
  description = "Path prefix of the secrets in Secrets Manager (Helm values-aws: secrets.external.*Key)."
  default     = "iot-collector/prod"
}

variable "api_keys_version" {
  type        = number
  description = "Bump to generate a new API key into the app secret (write-only: never in state)."
  default     = 1
}

variable "rotation_lambda_arn" {
  type        = string
  description = "Lambda that rotates the API keys (Secrets Manager rotation). Empty: rotate by bumping api_keys_version."
  default     = ""
}

variable "rotation_days" {
  type        = number
  description = "Days between automatic rotations of the API keys when a rotation Lambda is set."
  default     = 90
}

variable "collector_certificate_pem" {
  type        = string
  description = "The collector's AWS IoT certificate (PEM), stored for the External Secrets Operator."
}

variable "collector_private_key_pem" {
  type        = string
  description = "The collector's private key (PEM); empty when it was issued from a CSR (store the key yourself)."
  sensitive   = true
  default     = ""
}

variable "store_collector_private_key" {
  type        = bool
  description = "Store the collector's certificate and AWS-generated key (false when the certificate was issued from a CSR: store the key yourself)."
  default     = true
}

variable "create_autoscaling_service_linked_role" {
  type        = bool
  description = "Create the account's Auto Scaling service-linked role, which the key policy names (false if the account has it already)."
  default     = true
}

variable "rds_master_secret_arn" {
  type        = string
  description = "The RDS-managed master-user secret (rotated by RDS) that the operator may read."
}

variable "database_secret_arns" {
  type        = list(string)
  description = "Secrets of the database roles (iot_collector, iot_migrator) that the operator may read."
  default     = []
}

variable "oidc_provider_arn" {
  type        = string
  description = "ARN of the EKS IAM OIDC provider (IRSA)."
}

variable "oidc_provider" {
  type        = string
  description = "Issuer host/path of the EKS OIDC provider."
}

variable "eso_service_account" {
  type        = string
  description = "namespace:name of the External Secrets Operator's service account."
  default     = "external-secrets:external-secrets"
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
