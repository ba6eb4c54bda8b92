# The network module, AWS mocked: one NAT per zone, or one for all.

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  name               = "test"
  availability_zones = ["eu-west-1a", "eu-west-1b"]
  cluster_name       = "test"
  kms_key_arn        = "arn:aws:kms:eu-west-1:000000000000:key/test"
}

run "one_nat_per_zone" {
  command = plan

  assert {
    condition     = length(aws_nat_gateway.this) == 2 && length(aws_route.private_nat) == 2
    error_message = "zone-resilient: one NAT gateway per public subnet"
  }
}

run "single_nat" {
  command = plan

  variables {
    single_nat_gateway = true
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 1 && length(aws_route.private_nat) == 2
    error_message = "single_nat_gateway: one NAT for both private route tables"
  }
}
