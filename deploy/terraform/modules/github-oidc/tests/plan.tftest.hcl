# The github-oidc module, AWS mocked: the deploy role's access entry carries the group the
# deployer RBAC binds; the plan role may refresh the managed secrets.

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  name               = "test"
  github_repository  = "example/iot-collector"
  ecr_repository_arn = "arn:aws:ecr:eu-west-1:000000000000:repository/iot-collector"
  eks_cluster_name   = "test"
  state_bucket_arn   = "arn:aws:s3:::state"
  kms_key_arn        = "arn:aws:kms:eu-west-1:000000000000:key/test"
  secret_arns        = ["arn:aws:secretsmanager:eu-west-1:000000000000:secret:iot-collector/prod/app-AbCdEf"]
}

run "deploy_and_plan_roles" {
  command = plan

  assert {
    condition     = aws_eks_access_entry.deploy[0].kubernetes_groups == toset(["iot-collector:deployers"])
    error_message = "the deploy role must be in the group deploy/kubernetes/deployer-rbac.yaml binds"
  }

  assert {
    condition     = aws_eks_access_policy_association.deploy[0].access_scope[0].type == "namespace" && aws_eks_access_policy_association.deploy[0].access_scope[0].namespaces == toset(["iot"])
    error_message = "the AWS-managed admin policy stays scoped to the application namespace"
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.plan_secrets.statement :
      contains(s.actions, "secretsmanager:GetSecretValue") && s.resources == toset(var.secret_arns)
    ])
    error_message = "the plan role must read exactly the managed secrets (refresh of their versions)"
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.plan_secrets.statement :
      contains(s.actions, "kms:Decrypt") && contains(s.resources, var.kms_key_arn)
    ])
    error_message = "the plan role must decrypt the managed secrets"
  }

  assert {
    condition     = length(aws_iam_openid_connect_provider.github) == 1
    error_message = "a new account gets the GitHub OIDC provider"
  }
}

run "existing_oidc_provider" {
  command = plan

  variables {
    create_oidc_provider = false
  }

  assert {
    condition     = length(aws_iam_openid_connect_provider.github) == 0
    error_message = "an existing provider is referenced, not created"
  }
}
