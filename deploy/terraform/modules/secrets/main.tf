# One customer-managed KMS key for the environment (Secrets Manager, EKS Secrets, RDS, logs, S3,
# ECR), the collector's secrets in Secrets Manager, and the IRSA role that lets the External
# Secrets Operator read exactly those secrets.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
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
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: secrets, EKS, RDS, logs, backups, images"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# ---------------------------------------------------------------- app secret (API keys)

# Generated at apply time and written write-only: the key is in Secrets Manager, not in state.
ephemeral "aws_secretsmanager_random_password" "api_key" {
  password_length     = 48
  exclude_punctuation = true
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
    api_keys = ephemeral.aws_secretsmanager_random_password.api_key.random_password
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
  count = var.collector_private_key_pem != "" ? 1 : 0

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
    resources = [
      aws_secretsmanager_secret.app.arn,
      aws_secretsmanager_secret.mqtt_tls.arn,
      var.rds_master_secret_arn,
    ]
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
