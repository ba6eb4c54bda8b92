# Production environment: wires our modules. Plan/apply from here:
#   terraform init -backend-config=backend.hcl
#   terraform plan -var-file=prod.tfvars

data "aws_partition" "current" {}

locals {
  name         = "iot-collector-${var.environment}"
  cluster_name = local.name
  tags = {
    Project     = "iot-collector"
    Environment = var.environment
  }
}

module "secrets" {
  source = "../../modules/secrets"

  name                                   = local.name
  secret_prefix                          = "iot-collector/${var.environment}"
  collector_certificate_pem              = module.iot.collector_certificate_pem
  collector_private_key_pem              = module.iot.collector_private_key_pem
  store_collector_private_key            = var.collector_csr_pem == ""
  create_autoscaling_service_linked_role = var.create_autoscaling_service_linked_role
  rds_master_secret_arn                  = module.rds.master_user_secret_arn
  database_secret_arns                   = module.rds.app_role_secret_arns
  oidc_provider_arn                      = module.eks.oidc_provider_arn
  oidc_provider                          = module.eks.oidc_provider
  tags                                   = local.tags
}

module "network" {
  source = "../../modules/network"

  name               = local.name
  cluster_name       = local.cluster_name
  availability_zones = var.availability_zones
  single_nat_gateway = var.single_nat_gateway
  log_retention_days = var.log_retention_days
  kms_key_arn        = module.secrets.kms_key_arn
  tags               = local.tags
}

module "eks" {
  source = "../../modules/eks"

  name                   = local.cluster_name
  kubernetes_version     = var.kubernetes_version
  vpc_id                 = module.network.vpc_id
  private_subnet_ids     = module.network.private_subnet_ids
  node_security_group_id = module.network.node_security_group_id
  public_access_cidrs    = var.eks_public_access_cidrs
  kms_key_arn            = module.secrets.kms_key_arn
  log_retention_days     = var.log_retention_days
  node_instance_types    = var.node_instance_types
  spot_enabled           = var.spot_enabled
  spot_instance_types    = var.spot_instance_types

  addons_enabled                       = !contains(var.emulator_skips, "eks-addons")
  cluster_security_group_rules_enabled = !contains(var.emulator_skips, "eks-cluster-security-group")
  tags                                 = local.tags
}

module "rds" {
  source = "../../modules/rds"

  name                    = local.name
  vpc_id                  = module.network.vpc_id
  private_subnet_ids      = module.network.private_subnet_ids
  allowed_security_groups = { nodes = module.network.node_security_group_id }
  instance_class          = var.db_instance_class
  backup_retention_days   = var.db_backup_retention_days
  deletion_protection     = var.db_deletion_protection
  kms_key_arn             = module.secrets.kms_key_arn
  log_retention_days      = var.log_retention_days
  secret_prefix           = "iot-collector/${var.environment}"
  alarm_email             = var.alarm_email
  tags                    = local.tags

  password_rotation_enabled = !contains(var.emulator_skips, "db-password-rotation")
}

module "iot" {
  source = "../../modules/iot"

  name                       = local.name
  collector_client_id_prefix = "${var.helm_release}-"
  collector_csr_pem          = var.collector_csr_pem
  tagged_resources_enabled   = !contains(var.emulator_skips, "iot-tagged-resources")
  tags                       = local.tags
}

module "ecr" {
  source = "../../modules/ecr"

  name        = "iot-collector"
  kms_key_arn = module.secrets.kms_key_arn
  tags        = local.tags
}

module "backup" {
  source = "../../modules/backup"

  name                   = local.name
  bucket_name            = var.backup_bucket_name
  kms_key_arn            = module.secrets.kms_key_arn
  expiration_days        = var.backup_expiration_days
  oidc_provider_arn      = module.eks.oidc_provider_arn
  oidc_provider          = module.eks.oidc_provider
  backup_service_account = "${var.kubernetes_namespace}:${var.helm_release}-backup"
  tags                   = local.tags
}

module "github_oidc" {
  source = "../../modules/github-oidc"

  name                 = local.name
  github_repository    = var.github_repository
  ecr_repository_arn   = module.ecr.repository_arn
  eks_cluster_name     = module.eks.cluster_name
  deploy_namespace     = var.kubernetes_namespace
  access_entry_enabled = !contains(var.emulator_skips, "eks-access-entries")
  state_bucket_arn     = "arn:${data.aws_partition.current.partition}:s3:::${var.state_bucket_name}"
  kms_key_arn          = module.secrets.kms_key_arn
  secret_arns          = concat(module.secrets.secret_arns, module.rds.app_role_secret_arns)
  tags                 = local.tags
}
