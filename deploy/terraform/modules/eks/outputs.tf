output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "Endpoint of the Kubernetes API."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_security_group_id" {
  description = "Security group EKS created for the control plane and managed nodes."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider (IRSA)."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "oidc_provider" {
  description = "Issuer host/path of the OIDC provider, for IRSA trust conditions."
  value       = replace(aws_iam_openid_connect_provider.this.url, "https://", "")
}

output "cluster_autoscaler_role_arn" {
  description = "IRSA role of the Cluster Autoscaler (service account kube-system/cluster-autoscaler)."
  value       = aws_iam_role.autoscaler.arn
}
