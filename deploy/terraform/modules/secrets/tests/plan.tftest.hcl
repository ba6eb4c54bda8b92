# The secrets module, AWS mocked: the key policy lets Auto Scaling use the key for the nodes'
# encrypted volumes, and the certificate secret's version is counted by a plan-time flag.

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  name                      = "test"
  collector_certificate_pem = "cert"
  collector_private_key_pem = "key"
  rds_master_secret_arn     = "arn:aws:secretsmanager:eu-west-1:000000000000:secret:rds-db"
  oidc_provider_arn         = "arn:aws:iam::000000000000:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/TEST"
  oidc_provider             = "oidc.eks.eu-west-1.amazonaws.com/id/TEST"
}

run "key_policy_grants_the_autoscaling_service_linked_role" {
  command = plan

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.kms.statement :
      contains(flatten([for p in s.principals : p.identifiers]), "arn:aws:iam::000000000000:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
      && length(setsubtract(["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"], s.actions)) == 0
    ])
    error_message = "the KMS key policy must let AWSServiceRoleForAutoScaling encrypt and decrypt (EKS node volumes)"
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.kms.statement :
      contains(flatten([for p in s.principals : p.identifiers]), "arn:aws:iam::000000000000:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
      && contains(s.actions, "kms:CreateGrant")
      && anytrue([for c in s.condition : c.variable == "kms:GrantIsForAWSResource" && contains(c.values, "true")])
    ])
    error_message = "the KMS key policy must let AWSServiceRoleForAutoScaling create grants for AWS resources"
  }

  assert {
    condition     = length(aws_iam_service_linked_role.autoscaling) == 1
    error_message = "on a new account the service-linked role must exist before the key policy names it"
  }

  assert {
    condition     = length(aws_secretsmanager_secret_version.mqtt_tls) == 1
    error_message = "the AWS-generated certificate and key must be stored"
  }
}

run "existing_account_and_csr" {
  command = plan

  variables {
    create_autoscaling_service_linked_role = false
    store_collector_private_key            = false
  }

  assert {
    condition     = length(aws_iam_service_linked_role.autoscaling) == 0
    error_message = "an existing service-linked role must not be created again"
  }

  assert {
    condition     = length(aws_secretsmanager_secret_version.mqtt_tls) == 0
    error_message = "a CSR-issued certificate stores no key"
  }
}
