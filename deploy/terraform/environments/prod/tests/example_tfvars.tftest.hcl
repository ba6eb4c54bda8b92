# The plan with prod.tfvars.example: pytest runs
#   terraform test -filter=tests/example_tfvars.tftest.hcl -var-file=prod.tfvars.example

mock_provider "aws" {
  source = "../../mocks"
}

run "plan_with_the_example_tfvars" {
  command = plan

  assert {
    condition     = length(output.eks_public_access_cidrs) > 0
    error_message = "the example must open the EKS endpoint to the deploy runners"
  }
}
