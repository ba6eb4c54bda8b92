output "iot_endpoint" {
  description = "AWS IoT Core endpoint: Helm values-aws mqtt.url = mqtts://<this>:8883."
  value       = module.iot.endpoint
}

output "ecr_repository_url" {
  description = "Image repository: Helm values-aws image.repository."
  value       = module.ecr.repository_url
}

output "eks_cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name <this>)."
  value       = module.eks.cluster_name
}

output "rds_address" {
  description = "RDS host name for the database URL template of the ExternalSecret."
  value       = module.rds.address
}

output "rds_master_secret_arn" {
  description = "RDS-managed, rotated master secret (username, password)."
  value       = module.rds.master_user_secret_arn
}

output "app_secret_name" {
  description = "Secrets Manager secret with the API keys: values-aws secrets.external.credentialsKey."
  value       = module.secrets.app_secret_name
}

output "mqtt_tls_secret_name" {
  description = "Secrets Manager secret with the collector certificate: values-aws secrets.external.mqttTlsKey."
  value       = module.secrets.mqtt_tls_secret_name
}

output "external_secrets_role_arn" {
  description = "IRSA role to annotate on the External Secrets Operator's service account."
  value       = module.secrets.external_secrets_role_arn
}

output "alb_security_group_id" {
  description = "ALB security group: values-aws alb.ingress.kubernetes.io/security-groups."
  value       = module.network.alb_security_group_id
}

output "backup_bucket" {
  description = "Backup bucket: values-aws backup.s3.bucket."
  value       = module.backup.bucket
}

output "backup_role_arn" {
  description = "IRSA role of the backup CronJob: values-aws backup.serviceAccount.annotations."
  value       = module.backup.writer_role_arn
}

output "github_deploy_role_arn" {
  description = "Role for the image and deploy workflows (repository variable AWS_DEPLOY_ROLE_ARN)."
  value       = module.github_oidc.deploy_role_arn
}

output "github_plan_role_arn" {
  description = "Role for the terraform plan workflow (repository variable AWS_PLAN_ROLE_ARN)."
  value       = module.github_oidc.plan_role_arn
}

output "cluster_autoscaler_role_arn" {
  description = "IRSA role for the Cluster Autoscaler's service account (kube-system/cluster-autoscaler)."
  value       = module.eks.cluster_autoscaler_role_arn
}

output "eks_public_access_cidrs" {
  description = "CIDRs that reach the EKS API endpoint: the deploy runners must egress from one (repository variable EKS_PUBLIC_ACCESS_CIDRS)."
  value       = var.eks_public_access_cidrs
}

output "kms_key_arn" {
  description = "The environment's KMS key (backups, secrets, volumes)."
  value       = module.secrets.kms_key_arn
}

output "database_role_secret_names" {
  description = "Secrets of the iot_collector and iot_migrator roles: values-aws secrets.external.database.collectorSecretKey / migratorSecretKey."
  value       = module.rds.app_role_secret_names
}

output "alarm_topic_arn" {
  description = "SNS topic of the database alarms (RDS free storage, connections): subscribe your on-call."
  value       = module.rds.alarm_topic_arn
}
