variable "region" {
  type        = string
  description = "AWS region of the environment."
  default     = "eu-west-1"
}

variable "environment" {
  type        = string
  description = "Environment name, used in resource names and tags."
  default     = "prod"
}

variable "availability_zones" {
  type        = list(string)
  description = "Two availability zones of the region, for the public and private subnets."
  default     = ["eu-west-1a", "eu-west-1b"]
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway instead of one per zone (cheaper, not zone-resilient)."
  default     = false
}

variable "eks_public_access_cidrs" {
  type        = list(string)
  description = "CIDRs allowed to reach the EKS API endpoint from outside the VPC (operators, CI runners). Empty: private only."
  default     = []
}

variable "kubernetes_version" {
  type        = string
  description = "EKS Kubernetes version."
  default     = "1.30"
}

variable "node_instance_types" {
  type        = list(string)
  description = "Instance types of the on-demand node group."
  default     = ["m6i.large"]
}

variable "spot_enabled" {
  type        = bool
  description = "Run a spot node group for non-critical workloads (architecture: cost optimisation)."
  default     = true
}

variable "spot_instance_types" {
  type        = list(string)
  description = "Instance types of the spot node group."
  default     = ["m6i.large", "m5.large", "m6a.large"]
}

variable "log_retention_days" {
  type        = number
  description = "CloudWatch Logs retention for EKS, RDS and VPC flow logs, in days (architecture: configurable log retention)."
  default     = 365
}

variable "db_instance_class" {
  type        = string
  description = "RDS instance class."
  default     = "db.m6g.large"
}

variable "db_backup_retention_days" {
  type        = number
  description = "Days of RDS automated backups (RPO 24 h needs at least 1; 14 gives two weeks of point-in-time recovery)."
  default     = 14
}

variable "db_deletion_protection" {
  type        = bool
  description = "Deletion protection of the RDS instance."
  default     = true
}

variable "backup_bucket_name" {
  type        = string
  description = "Globally unique name of the backup bucket."
}

variable "backup_expiration_days" {
  type        = number
  description = "Days a logical backup is kept in S3."
  default     = 365
}

variable "github_repository" {
  type        = string
  description = "owner/name of the GitHub repository allowed to deploy (OIDC)."
}

variable "state_bucket_name" {
  type        = string
  description = "Name of the Terraform state bucket (the plan role may read it)."
}

variable "helm_release" {
  type        = string
  description = "Helm release name in the cluster; pods are <release>-N, the MQTT client ids."
  default     = "iot-collector"
}

variable "kubernetes_namespace" {
  type        = string
  description = "Namespace of the Helm release."
  default     = "iot"
}

variable "collector_csr_pem" {
  type        = string
  description = "Optional CSR for the collector certificate, so its private key never leaves your machine."
  default     = ""
}
