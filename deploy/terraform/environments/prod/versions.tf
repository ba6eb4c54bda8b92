terraform {
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  # Remote state in S3 with S3-native locking (use_lockfile, Terraform >= 1.10): no DynamoDB
  # table. The bucket, key and region come from backend.hcl (see backend.hcl.example):
  #   terraform init -backend-config=backend.hcl
  backend "s3" {
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "iot-collector"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}
