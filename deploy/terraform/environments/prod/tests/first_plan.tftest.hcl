# A first plan of prod on a new account (empty state), every AWS answer mocked. It catches what
# `validate` cannot: for_each/count over values known only after apply, provider-side checks of
# policies and ARNs. Run by tests/deploy/test_deploy_terraform_plan.py (pytest).

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  backup_bucket_name      = "test-iot-collector-backups"
  github_repository       = "example/iot-collector"
  state_bucket_name       = "test-terraform-state"
  eks_public_access_cidrs = ["198.51.100.0/24"]
}

run "first_plan_on_a_new_account" {
  command = plan

  assert {
    condition     = tolist(output.eks_public_access_cidrs) == tolist(["198.51.100.0/24"])
    error_message = "the EKS endpoint must be open to exactly the given CIDRs"
  }
}

run "a_private_only_endpoint_is_refused" {
  command = plan

  variables {
    eks_public_access_cidrs = []
  }

  expect_failures = [var.eks_public_access_cidrs]
}

run "an_endpoint_open_to_the_internet_is_refused" {
  command = plan

  variables {
    eks_public_access_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.eks_public_access_cidrs]
}

run "a_collector_certificate_from_a_csr_plans_too" {
  command = plan

  variables {
    collector_csr_pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
  }
}
