output "deploy_role_arn" {
  description = "Role the image and deploy workflows assume (repository variable AWS_DEPLOY_ROLE_ARN)."
  value       = aws_iam_role.deploy.arn
}

output "plan_role_arn" {
  description = "Role the terraform plan workflow assumes (repository variable AWS_PLAN_ROLE_ARN)."
  value       = aws_iam_role.plan.arn
}
