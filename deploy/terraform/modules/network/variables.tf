variable "name" {
  type        = string
  description = "Name prefix of every resource (e.g. iot-collector-prod)."
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR block of the VPC."
  default     = "10.0.0.0/16"
}

variable "public_subnet_cidrs" {
  type        = list(string)
  description = "CIDRs of the public subnets (ALB, NAT gateways), one per availability zone."
  default     = ["10.0.1.0/24", "10.0.2.0/24"]
}

variable "private_subnet_cidrs" {
  type        = list(string)
  description = "CIDRs of the private subnets (EKS nodes, RDS), one per availability zone."
  default     = ["10.0.10.0/24", "10.0.11.0/24"]
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones, as many as subnets of each kind."
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all private subnets (cheaper) instead of one per zone (zone-resilient)."
  default     = false
}

variable "cluster_name" {
  type        = string
  description = "EKS cluster name, for the subnet tags the AWS Load Balancer Controller reads."
}

variable "app_port" {
  type        = number
  description = "Port of the collector's HTTP API: the only port the ALB may reach on the nodes."
  default     = 3000
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the VPC flow logs in CloudWatch Logs, in days."
  default     = 365
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts the flow-log group."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
