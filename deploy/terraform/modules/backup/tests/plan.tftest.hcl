# The backup module, AWS mocked: the writer role is <name>-backup, as values-aws.yaml expects.

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  name              = "iot-collector-prod"
  bucket_name       = "test-backups"
  kms_key_arn       = "arn:aws:kms:eu-west-1:000000000000:key/test"
  oidc_provider_arn = "arn:aws:iam::000000000000:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/TEST"
  oidc_provider     = "oidc.eks.eu-west-1.amazonaws.com/id/TEST"
}

run "writer_role" {
  command = plan

  assert {
    condition     = aws_iam_role.writer.name == "iot-collector-prod-backup"
    error_message = "the backup role must be named as values-aws.yaml annotates it"
  }

  assert {
    condition     = one(flatten([for r in aws_s3_bucket_server_side_encryption_configuration.this.rule : [for d in r.apply_server_side_encryption_by_default : d.kms_master_key_id]])) == var.kms_key_arn
    error_message = "objects are encrypted with the environment's key by default"
  }
}
