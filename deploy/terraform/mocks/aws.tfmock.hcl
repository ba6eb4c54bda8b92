# Answers of the mocked AWS provider in the `terraform test` plan tests (tests/*.tftest.hcl).
# Only what the provider validates at plan time needs a realistic value: policy JSON, ARNs'
# partition, the account and region. Everything else is a generated placeholder.

mock_data "aws_iam_policy_document" {
  defaults = {
    json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
  }
}

mock_data "aws_partition" {
  defaults = {
    partition  = "aws"
    dns_suffix = "amazonaws.com"
  }
}

mock_data "aws_region" {
  defaults = {
    name = "eu-west-1"
  }
}

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "000000000000"
  }
}
