variable "name" {
  type        = string
  description = "Name of the EKS cluster."
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes minor version of the control plane and nodes."
  default     = "1.30"
}

variable "vpc_id" {
  type        = string
  description = "VPC of the cluster."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets for the control-plane ENIs and the nodes."
}

variable "node_security_group_id" {
  type        = string
  description = "Security group of the nodes (network module): reachable only from the ALB, itself, the control plane."
}

variable "public_access_cidrs" {
  type        = list(string)
  description = "CIDRs allowed to reach the public API endpoint (operators, CI). Empty: private endpoint only."
  default     = []
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for envelope encryption of Kubernetes Secrets and the control-plane log group."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the control-plane logs in CloudWatch Logs, in days."
  default     = 365
}

variable "node_instance_types" {
  type        = list(string)
  description = "Instance types of the on-demand node group (the collector and other critical workloads)."
  default     = ["m6i.large"]
}

variable "node_min_size" {
  type        = number
  description = "Minimum size of the on-demand node group."
  default     = 3
}

variable "node_desired_size" {
  type        = number
  description = "Desired size of the on-demand node group."
  default     = 3
}

variable "node_max_size" {
  type        = number
  description = "Maximum size of the on-demand node group."
  default     = 6
}

variable "spot_enabled" {
  type        = bool
  description = "Create a tainted spot node group for non-critical workloads; only pods that tolerate iot-collector/spot land there (none of the chart's by default)."
  default     = false
}

variable "spot_instance_types" {
  type        = list(string)
  description = "Instance types of the spot node group (several, for capacity)."
  default     = ["m6i.large", "m5.large", "m6a.large"]
}

variable "spot_min_size" {
  type        = number
  description = "Minimum size of the spot node group."
  default     = 0
}

variable "spot_desired_size" {
  type        = number
  description = "Desired size of the spot node group."
  default     = 1
}

variable "spot_max_size" {
  type        = number
  description = "Maximum size of the spot node group."
  default     = 4
}

variable "node_disk_size_gb" {
  type        = number
  description = "Root volume size of the nodes, in GiB (encrypted gp3)."
  default     = 50
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "addons_enabled" {
  type        = bool
  description = "Install the EKS add-ons (vpc-cni, coredns, kube-proxy, pod identity, EBS CSI). Only the moto test turns this off: moto has no CreateAddon."
  default     = true
}

variable "cluster_security_group_rules_enabled" {
  type        = bool
  description = "Rules between the nodes and the cluster security group EKS creates. Only the moto test turns this off: moto's clusters have no such group."
  default     = true
}
