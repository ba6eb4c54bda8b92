# One customer-managed KMS key for the environment (Secrets Manager, EKS Secrets, RDS, logs, S3,
# ECR), the collector's secrets in Secrets Manager, and the IRSA role that lets the External
# Secrets Operator read exactly those secrets.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # EC2 Auto Scaling launches the EKS nodes and creates their root volumes with this key: without
  # these grants the instances terminate at launch and the node group goes CREATE_FAILED.
  autoscaling_role_arn = "arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
}

# A key policy may only name principals that exist: on a new account the Auto Scaling
# service-linked role appears with the first Auto Scaling group, after this key. Create it first
# (set create_autoscaling_service_linked_role = false where the account has it already).
resource "aws_iam_service_linked_role" "autoscaling" {
  count = var.create_autoscaling_service_linked_role ? 1 : 0

  aws_service_name = "autoscaling.amazonaws.com"
  tags             = var.tags
}

data "aws_iam_policy_document" "kms" {
  # A key policy's Resource "*" means this key only; the account keeps administering it (AWS's
  # default key policy) and IAM policies grant the actual use (e.g. the ESO role's kms:Decrypt).
  # checkov:skip=CKV_AWS_109:key policy: "*" is this key; administration stays with the account root
  # checkov:skip=CKV_AWS_111:key policy: "*" is this key; writes are granted per role in IAM
  # checkov:skip=CKV_AWS_356:key policy: the resource of a key policy is always "*" (this key)
  statement {
    sid       = "AccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogs"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${data.aws_region.current.name}:${local.account_id}:*"]
    }
  }

  statement {
    sid = "AutoScalingNodeVolumes"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:DescribeKey",
    ]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.autoscaling_role_arn]
    }
  }

  statement {
    sid       = "AutoScalingNodeVolumeGrants"
    actions   = ["kms:CreateGrant"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.autoscaling_role_arn]
    }
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: secrets, EKS, RDS, logs, backups, images"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags

  depends_on = [aws_iam_service_linked_role.autoscaling]
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# ---------------------------------------------------------------- app secret (API keys)

# Generated at apply time and written write-only: the key is in Secrets Manager, neither in the
# state nor in the plan. Two uuid() (crypto/rand, 244 random bits) rather than an ephemeral
# aws_secretsmanager_random_password: that one calls GetRandomPassword during every plan (the
# read-only plan role may not) and cannot be mocked by `terraform test`.
locals {
  api_key = "${replace(uuid(), "-", "")}${replace(uuid(), "-", "")}"
}

resource "aws_secretsmanager_secret" "app" {
  # checkov:skip=CKV2_AWS_57:rotation is enabled below when rotation_lambda_arn is set; without it, keys rotate by bumping api_keys_version (docs/deployment.md)
  name        = "${var.secret_prefix}/app"
  description = "iot-collector API keys (IOT_API_KEYS)"
  kms_key_id  = aws_kms_key.this.arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "app" {
  secret_id = aws_secretsmanager_secret.app.id
  secret_string_wo = jsonencode({
    api_keys = local.api_key
  })
  secret_string_wo_version = var.api_keys_version
}

resource "aws_secretsmanager_secret_rotation" "app" {
  count = var.rotation_lambda_arn != "" ? 1 : 0

  secret_id           = aws_secretsmanager_secret.app.id
  rotation_lambda_arn = var.rotation_lambda_arn
  rotation_rules {
    automatically_after_days = var.rotation_days
  }
}

# ---------------------------------------------------------------- collector MQTT certificate

resource "aws_secretsmanager_secret" "mqtt_tls" {
  # checkov:skip=CKV2_AWS_57:an IoT certificate is rotated by issuing a new one (terraform -replace on the iot module's certificate), not by a rotation Lambda
  name        = "${var.secret_prefix}/mqtt-tls"
  description = "iot-collector AWS IoT Core client certificate and key"
  kms_key_id  = aws_kms_key.this.arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "mqtt_tls" {
  # A known flag, not the key itself: the key is known only after apply (count must be known at
  # plan time).
  count = var.store_collector_private_key ? 1 : 0

  secret_id = aws_secretsmanager_secret.mqtt_tls.id
  secret_string = jsonencode({
    certificate_pem = var.collector_certificate_pem
    private_key_pem = var.collector_private_key_pem
  })
}

# ---------------------------------------------------------------- External Secrets Operator (IRSA)

data "aws_iam_policy_document" "eso_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider}:sub"
      values   = ["system:serviceaccount:${var.eso_service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "eso" {
  name               = "${var.name}-external-secrets"
  assume_role_policy = data.aws_iam_policy_document.eso_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "eso" {
  statement {
    actions = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = concat([
      aws_secretsmanager_secret.app.arn,
      aws_secretsmanager_secret.mqtt_tls.arn,
      var.rds_master_secret_arn,
    ], var.database_secret_arns)
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
}

resource "aws_iam_role_policy" "eso" {
  name   = "read-iot-collector-secrets"
  role   = aws_iam_role.eso.id
  policy = data.aws_iam_policy_document.eso.json
}
