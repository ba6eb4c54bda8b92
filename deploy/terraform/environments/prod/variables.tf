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
  description = "CIDRs allowed to reach the EKS API endpoint from outside the VPC: the deploy workflow's runners (static egress ranges) and operators. Required: the release workflow deploys through this endpoint."
  validation {
    condition     = length(var.eks_public_access_cidrs) > 0 && alltrue([for c in var.eks_public_access_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "eks_public_access_cidrs: give the CIDRs of the deploy runners and operators (at least one, none /0); the release workflow reaches the cluster through them."
  }
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
  description = "Run a tainted spot node group for non-critical workloads; off by default because no workload of the chart tolerates it yet (cost for nothing)."
  default     = false
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

variable "create_autoscaling_service_linked_role" {
  type        = bool
  description = "Create the account's Auto Scaling service-linked role, which the KMS key policy names for the nodes' encrypted volumes (false if the account has it already)."
  default     = true
}

variable "emulator_skips" {
  type        = set(string)
  description = "Parts an AWS emulator cannot create, left out of the apply test against moto (tests/deploy/test_deploy_terraform_moto.py). Never set for a real account."
  default     = []
  validation {
    condition     = length(setsubtract(var.emulator_skips, ["iot-tagged-resources", "eks-addons", "eks-access-entries", "eks-cluster-security-group", "db-password-rotation"])) == 0
    error_message = "emulator_skips: only iot-tagged-resources, eks-addons, eks-access-entries, eks-cluster-security-group, db-password-rotation."
  }
}

variable "alarm_email" {
  type        = string
  description = "E-mail subscribed to the database alarms (RDS free storage, connections); empty: subscribe to the alarm_topic_arn output yourself."
  default     = ""
}
