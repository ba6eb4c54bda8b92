output "address" {
  description = "Host name of the database."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the database."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Name of the application database."
  value       = aws_db_instance.this.db_name
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret (username, password) that RDS manages and rotates."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.this.id
}

output "app_role_secret_names" {
  description = "Secrets Manager names of the roles' secrets, by role: collector, migrator (values-aws secrets.external.database.*SecretKey)."
  value       = { for k, s in aws_secretsmanager_secret.app_role : k => s.name }
}

output "app_role_secret_arns" {
  description = "ARNs of the roles' secrets (the External Secrets Operator reads them; the plan role refreshes them)."
  value       = [for s in aws_secretsmanager_secret.app_role : s.arn]
}

output "alarm_topic_arn" {
  description = "SNS topic of the database alarms (free storage, connections)."
  value       = aws_sns_topic.alarms.arn
}
