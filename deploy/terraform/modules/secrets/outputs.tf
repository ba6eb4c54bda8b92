output "kms_key_arn" {
  description = "ARN of the environment's KMS key."
  value       = aws_kms_key.this.arn
}

output "app_secret_name" {
  description = "Secrets Manager name of the API keys secret (values-aws: secrets.external.credentialsKey)."
  value       = aws_secretsmanager_secret.app.name
}

output "mqtt_tls_secret_name" {
  description = "Secrets Manager name of the collector certificate secret (values-aws: secrets.external.mqttTlsKey)."
  value       = aws_secretsmanager_secret.mqtt_tls.name
}

output "external_secrets_role_arn" {
  description = "IRSA role for the External Secrets Operator's service account."
  value       = aws_iam_role.eso.arn
}

output "secret_arns" {
  description = "ARNs of the secrets Terraform writes (the plan role refreshes them)."
  value       = [aws_secretsmanager_secret.app.arn, aws_secretsmanager_secret.mqtt_tls.arn]
}
