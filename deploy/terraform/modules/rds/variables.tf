variable "name" {
  type        = string
  description = "Identifier prefix of the database resources."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the database."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets of the DB subnet group (two zones for Multi-AZ)."
}

variable "allowed_security_groups" {
  type        = map(string)
  description = "Security groups allowed to connect on 5432, by a name known at plan time (e.g. { nodes = <id> }): the EKS nodes only."
}

variable "engine_version" {
  type        = string
  description = "PostgreSQL major version; 15 matches pg_dump in the collector image (backup)."
  default     = "15"
}

variable "instance_class" {
  type        = string
  description = "DB instance class."
  default     = "db.m6g.large"
}

variable "allocated_storage_gb" {
  type        = number
  description = "Initial storage, in GiB."
  default     = 100
}

variable "max_allocated_storage_gb" {
  type        = number
  description = "Storage autoscaling ceiling, in GiB."
  default     = 500
}

variable "database_name" {
  type        = string
  description = "Name of the application database."
  default     = "iot"
}

variable "master_username" {
  type        = string
  description = "Master user; its password is generated, stored and rotated by RDS in Secrets Manager."
  default     = "iot_admin"
}

variable "backup_retention_days" {
  type        = number
  description = "Days of automated backups (point-in-time recovery window)."
  default     = 14
}

variable "backup_window" {
  type        = string
  description = "Daily automated-backup window (UTC), before the chart's logical backup at 02:17."
  default     = "00:30-01:30"
}

variable "maintenance_window" {
  type        = string
  description = "Weekly maintenance window (UTC)."
  default     = "sun:03:00-sun:04:00"
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the instance (turn off deliberately before a destroy)."
  default     = true
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for storage, Performance Insights, logs and the master-password secret."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the exported PostgreSQL logs in CloudWatch Logs, in days."
  default     = 365
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "secret_prefix" {
  type        = string
  description = "Path prefix of the database roles' secrets: <prefix>/db-collector and <prefix>/db-migrator."
  default     = "iot-collector/prod"
}

variable "app_role_passwords_version" {
  type        = number
  description = "Bump to write new initial passwords into the roles' secrets (write-only; rotation normally changes them)."
  default     = 1
}

variable "password_rotation_enabled" {
  type        = bool
  description = "Rotate the roles' passwords with AWS's single-user PostgreSQL rotation function (Serverless Application Repository). Only the moto test turns this off: moto has no serverlessrepo."
  default     = true
}

variable "password_rotation_days" {
  type        = number
  description = "Days between rotations of the collector's and the migrations' passwords."
  default     = 30
}

variable "alarm_email" {
  type        = string
  description = "E-mail subscribed to the database alarm topic (empty: subscribe yourself to the alarm_topic_arn output)."
  default     = ""
}

variable "free_storage_alarm_gb" {
  type        = number
  description = "Alarm when the database's free storage falls under this, in GiB."
  default     = 20
}

variable "connections_alarm_threshold" {
  type        = number
  description = "Alarm when the database's connections exceed this (keep it under max_connections of the instance class)."
  default     = 600
}
