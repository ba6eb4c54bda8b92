variable "name" {
  type        = string
  description = "Name prefix of the roles."
}

variable "github_repository" {
  type        = string
  description = "owner/name of the GitHub repository whose workflows may assume the roles."
}

variable "ecr_repository_arn" {
  type        = string
  description = "Repository the deploy role may push to."
}

variable "eks_cluster_name" {
  type        = string
  description = "Cluster the deploy role may deploy to."
}

variable "deploy_namespace" {
  type        = string
  description = "Kubernetes namespace the deploy role administers."
  default     = "iot"
}

variable "state_bucket_arn" {
  type        = string
  description = "ARN of the Terraform state bucket, which the plan role reads."
}

variable "deploy_kubernetes_group" {
  type        = string
  description = "Kubernetes group of the deploy role's access entry; deploy/kubernetes/deployer-rbac.yaml binds it."
  default     = "iot-collector:deployers"
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key of the secrets Terraform manages (the plan role decrypts them through Secrets Manager to refresh them)."
}

variable "secret_arns" {
  type        = list(string)
  description = "Secrets whose versions Terraform manages: the plan role may read them to refresh the state."
}

variable "create_oidc_provider" {
  type        = bool
  description = "Create the account's GitHub OIDC provider (false if it exists already)."
  default     = true
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "access_entry_enabled" {
  type        = bool
  description = "Give the deploy role its EKS access entry. Only the moto test turns this off: moto has no CreateAccessEntry."
  default     = true
}
