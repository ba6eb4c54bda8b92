# PostgreSQL on RDS: Multi-AZ, encrypted, automated backups, deletion protection, reachable
# only from the EKS nodes' security group. The master password never appears in Terraform: RDS
# generates it into Secrets Manager and rotates it (manage_master_user_password).

data "aws_partition" "current" {}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.private_subnet_ids
  tags       = var.tags
}

resource "aws_security_group" "this" {
  name        = "${var.name}-rds"
  description = "PostgreSQL: inbound only from the EKS nodes"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-rds" })
}

# Keyed by the caller's static names: a group's id is known only after apply, a key must be
# known at plan time (for_each over the ids fails on a first plan).
resource "aws_vpc_security_group_ingress_rule" "from_nodes" {
  for_each = var.allowed_security_groups

  security_group_id            = aws_security_group.this.id
  description                  = "PostgreSQL from the EKS nodes"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.name}-pg${var.engine_version}-"
  family      = "postgres${var.engine_version}"
  description = "iot-collector PostgreSQL ${var.engine_version}"

  # TLS only.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  # Statement logging for audits and slow queries.
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "postgresql" {
  name              = "/aws/rds/instance/${var.name}/postgresql"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  db_name                             = var.database_name
  username                            = var.master_username
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = var.kms_key_arn
  iam_database_authentication_enabled = true

  allocated_storage     = var.allocated_storage_gb
  max_allocated_storage = var.max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.this.id]
  publicly_accessible    = false
  port                   = 5432
  parameter_group_name   = aws_db_parameter_group.this.name

  backup_retention_period   = var.backup_retention_days
  backup_window             = var.backup_window
  maintenance_window        = var.maintenance_window
  copy_tags_to_snapshot     = true
  delete_automated_backups  = false
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final"

  auto_minor_version_upgrade = true
  apply_immediately          = false

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 30
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]

  tags = var.tags

  depends_on = [aws_cloudwatch_log_group.postgresql]
}

# ---------------------------------------------------------------- application roles
# The collector and the migrations log in as their own roles (iot_collector, iot_migrator),
# made once by the chart's database-roles Job with the master secret
# (deploy/helm/iot-collector/files/postgresql/database-roles.sql). Their secrets hold the RDS
# rotation format (engine, host, port, dbname, username, password); the first password is
# generated here write-only (never in state or plan), then Secrets Manager rotates it
# (single-user rotation: the role changes its own password). The collector reads it through a
# libpq passfile that the External Secrets Operator keeps current: no restart (docs/deployment.md).

locals {
  app_roles = toset(["collector", "migrator"])
}

data "aws_region" "current" {}

resource "aws_secretsmanager_secret" "app_role" {
  # checkov:skip=CKV2_AWS_57:rotation is enabled below (aws_secretsmanager_secret_rotation.app_role) when password_rotation_enabled
  for_each = local.app_roles

  name        = "${var.secret_prefix}/db-${each.key}"
  description = "PostgreSQL role iot_${each.key} of ${var.name} (RDS rotation format)"
  kms_key_id  = var.kms_key_arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "app_role" {
  for_each = local.app_roles

  secret_id = aws_secretsmanager_secret.app_role[each.key].id
  secret_string_wo = jsonencode({
    engine   = "postgres"
    host     = aws_db_instance.this.address
    port     = aws_db_instance.this.port
    dbname   = var.database_name
    username = "iot_${each.key}"
    password = "${replace(uuid(), "-", "")}${replace(uuid(), "-", "")}"
  })
  secret_string_wo_version = var.app_role_passwords_version
}

# The rotation function from AWS's Serverless Application Repository, in the private subnets
# (it must reach PostgreSQL, and Secrets Manager through the NAT).
resource "aws_security_group" "rotation" {
  # checkov:skip=CKV2_AWS_5:attached to the rotation function that the Serverless Application Repository stack creates (vpcSecurityGroupIds)
  count = var.password_rotation_enabled ? 1 : 0

  name        = "${var.name}-db-rotation"
  description = "Secrets Manager rotation function of the database roles"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-db-rotation" })
}

resource "aws_vpc_security_group_egress_rule" "rotation_to_db" {
  count = var.password_rotation_enabled ? 1 : 0

  security_group_id            = aws_security_group.rotation[0].id
  description                  = "To PostgreSQL"
  referenced_security_group_id = aws_security_group.this.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_egress_rule" "rotation_to_aws" {
  count = var.password_rotation_enabled ? 1 : 0

  security_group_id = aws_security_group.rotation[0].id
  description       = "To the Secrets Manager API (HTTPS through the NAT)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "from_rotation" {
  count = var.password_rotation_enabled ? 1 : 0

  security_group_id            = aws_security_group.this.id
  description                  = "PostgreSQL from the rotation function"
  referenced_security_group_id = aws_security_group.rotation[0].id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_serverlessapplicationrepository_cloudformation_stack" "rotation" {
  count = var.password_rotation_enabled ? 1 : 0

  name           = "${var.name}-db-rotation"
  application_id = "arn:${data.aws_partition.current.partition}:serverlessrepo:us-east-1:297356227824:applications/SecretsManagerRDSPostgreSQLRotationSingleUser"
  capabilities   = ["CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"]
  parameters = {
    endpoint            = "https://secretsmanager.${data.aws_region.current.name}.${data.aws_partition.current.dns_suffix}"
    functionName        = "${var.name}-db-rotation"
    vpcSubnetIds        = join(",", var.private_subnet_ids)
    vpcSecurityGroupIds = aws_security_group.rotation[0].id
    kmsKeyArn           = var.kms_key_arn
    # The collector's passfile (host:port:db:user:password) cannot hold ':' or '\'.
    excludeCharacters = "/@\"'\\:"
  }
  tags = var.tags
}

resource "aws_secretsmanager_secret_rotation" "app_role" {
  for_each = var.password_rotation_enabled ? local.app_roles : toset([])

  secret_id           = aws_secretsmanager_secret.app_role[each.key].id
  rotation_lambda_arn = aws_serverlessapplicationrepository_cloudformation_stack.rotation[0].outputs["RotationLambdaARN"]
  rotation_rules {
    automatically_after_days = var.password_rotation_days
  }

  depends_on = [aws_secretsmanager_secret_version.app_role]
}

# ---------------------------------------------------------------- alarms
# RDS storage and connections are CloudWatch metrics, not Prometheus ones: these alarms notify
# the alarm topic (subscribe your on-call to it; alarm_email does one e-mail subscription).

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-db-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email != "" ? 1 : 0

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_metric_alarm" "free_storage" {
  alarm_name          = "${var.name}-db-free-storage-low"
  alarm_description   = "RDS free storage under ${var.free_storage_alarm_gb} GiB (storage autoscaling up to ${var.max_allocated_storage_gb} GiB may be exhausted): docs/runbooks/disk-filling-up.md"
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.this.identifier }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "LessThanThreshold"
  threshold           = var.free_storage_alarm_gb * 1024 * 1024 * 1024
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "connections" {
  alarm_name          = "${var.name}-db-connections-high"
  alarm_description   = "RDS connections above ${var.connections_alarm_threshold} (near max_connections): docs/runbooks/postgres-connections-near-limit.md"
  namespace           = "AWS/RDS"
  metric_name         = "DatabaseConnections"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.this.identifier }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.connections_alarm_threshold
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}
