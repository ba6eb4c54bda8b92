variable "name" {
  type        = string
  description = "Name prefix: the writer role is <name>-backup (values-aws: backup.serviceAccount.annotations)."
}

variable "bucket_name" {
  type        = string
  description = "Name of the backup bucket (globally unique)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for server-side encryption of the backups."
}

variable "transition_to_glacier_days" {
  type        = number
  description = "Days after which a backup moves to Glacier Instant Retrieval."
  default     = 30
}

variable "expiration_days" {
  type        = number
  description = "Days after which a backup is deleted."
  default     = 365
}

variable "noncurrent_expiration_days" {
  type        = number
  description = "Days after which an overwritten or deleted backup version is removed."
  default     = 30
}

variable "oidc_provider_arn" {
  type        = string
  description = "ARN of the EKS IAM OIDC provider (IRSA)."
}

variable "oidc_provider" {
  type        = string
  description = "Issuer host/path of the EKS OIDC provider."
}

variable "backup_service_account" {
  type        = string
  description = "namespace:name of the Helm chart's backup service account (<release>-backup)."
  default     = "iot:iot-collector-backup"
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
