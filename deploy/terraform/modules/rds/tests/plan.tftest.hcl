# The rds module, AWS mocked: inbound rules keyed by static names, one per allowed group.

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  name                    = "test"
  vpc_id                  = "vpc-1"
  private_subnet_ids      = ["subnet-1", "subnet-2"]
  allowed_security_groups = { nodes = "sg-nodes" }
  kms_key_arn             = "arn:aws:kms:eu-west-1:000000000000:key/test"
}

run "inbound_only_from_the_given_groups" {
  command = plan

  assert {
    condition     = keys(aws_vpc_security_group_ingress_rule.from_nodes) == ["nodes"]
    error_message = "one inbound rule per allowed group, keyed by its static name"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.from_nodes["nodes"].referenced_security_group_id == "sg-nodes" && aws_vpc_security_group_ingress_rule.from_nodes["nodes"].from_port == 5432
    error_message = "PostgreSQL (5432) from the nodes' group only"
  }

  assert {
    condition     = aws_db_instance.this.manage_master_user_password && aws_db_instance.this.storage_encrypted && !aws_db_instance.this.publicly_accessible
    error_message = "RDS: managed master password, encrypted, private"
  }
}

run "application_roles_with_rotation_and_alarms" {
  command = plan

  assert {
    condition     = toset(keys(aws_secretsmanager_secret.app_role)) == toset(["collector", "migrator"])
    error_message = "one secret per database role: the collector and the migrations"
  }

  assert {
    condition     = aws_secretsmanager_secret.app_role["collector"].name == "iot-collector/prod/db-collector"
    error_message = "the collector's secret is <prefix>/db-collector, as values-aws names it"
  }

  assert {
    condition     = length(aws_secretsmanager_secret_rotation.app_role) == 2 && alltrue([for r in aws_secretsmanager_secret_rotation.app_role : r.rotation_rules[0].automatically_after_days == 30])
    error_message = "both roles' passwords rotate every 30 days"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.free_storage.metric_name == "FreeStorageSpace" && aws_cloudwatch_metric_alarm.connections.metric_name == "DatabaseConnections"
    error_message = "alarms on RDS free storage and connections"
  }
}
