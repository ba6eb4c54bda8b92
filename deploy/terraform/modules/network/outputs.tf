output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "CIDR block of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "IDs of the public subnets."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets."
  value       = aws_subnet.private[*].id
}

output "alb_security_group_id" {
  description = "Security group of the ALB (Helm values-aws: alb.ingress.kubernetes.io/security-groups)."
  value       = aws_security_group.alb.id
}

output "node_security_group_id" {
  description = "Security group of the EKS nodes (the only source RDS accepts)."
  value       = aws_security_group.nodes.id
}
