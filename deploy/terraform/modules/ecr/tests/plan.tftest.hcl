# The ecr module, AWS mocked: immutable, scanned, encrypted with our key.

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  kms_key_arn = "arn:aws:kms:eu-west-1:000000000000:key/test"
}

run "repository" {
  command = plan

  assert {
    condition     = aws_ecr_repository.this.image_tag_mutability == "IMMUTABLE"
    error_message = "tags are immutable: a deployed tag always names the same image"
  }

  assert {
    condition     = aws_ecr_repository.this.encryption_configuration[0].kms_key == var.kms_key_arn
    error_message = "images are encrypted with the environment's key"
  }
}
