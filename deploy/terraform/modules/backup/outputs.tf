output "bucket" {
  description = "Name of the backup bucket (values-aws: backup.s3.bucket)."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the backup bucket."
  value       = aws_s3_bucket.this.arn
}

output "writer_role_arn" {
  description = "IRSA role of the backup CronJob (values-aws: backup.serviceAccount.annotations)."
  value       = aws_iam_role.writer.arn
}
