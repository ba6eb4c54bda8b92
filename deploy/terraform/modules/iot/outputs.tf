output "endpoint" {
  description = "ATS data endpoint of the account: IOT_MQTT_URL = mqtts://<endpoint>:8883."
  value       = data.aws_iot_endpoint.ats.endpoint_address
}

output "thing_type_name" {
  description = "Thing type of the devices."
  value       = one(aws_iot_thing_type.sensor[*].name)
}

output "device_policy_name" {
  description = "Policy to attach to every device certificate."
  value       = one(aws_iot_policy.device[*].name)
}

output "collector_policy_name" {
  description = "Policy attached to the collector certificate."
  value       = one(aws_iot_policy.collector[*].name)
}

output "collector_certificate_pem" {
  description = "The collector's certificate (PEM)."
  value       = aws_iot_certificate.collector.certificate_pem
  sensitive   = true
}

output "collector_private_key_pem" {
  description = "The collector's private key when AWS generated it (empty with a CSR)."
  value       = aws_iot_certificate.collector.private_key
  sensitive   = true
}
