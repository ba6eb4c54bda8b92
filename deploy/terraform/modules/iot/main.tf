# AWS IoT Core: the devices' thing type and policy (a device connects only as its own thing
# name and publishes only to the data topic and its own status topic), the collector's
# certificate and policy (shared subscription on the data topic, the status topics), and the
# account's ATS endpoint for IOT_MQTT_URL.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  arn_prefix = "arn:${data.aws_partition.current.partition}:iot:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
  # Per-device topics (var.device_topics) bind each device's readings to its certificate.
  device_data_topic = var.device_topics ? "${var.data_topic}/$${iot:Connection.Thing.ThingName}" : var.data_topic
  data_filter       = var.device_topics ? "${var.data_topic}/+" : var.data_topic
  data_topics       = var.device_topics ? "${var.data_topic}/*" : var.data_topic
}

data "aws_iot_endpoint" "ats" {
  endpoint_type = "iot:Data-ATS"
}

resource "aws_iot_thing_type" "sensor" {
  count = var.tagged_resources_enabled ? 1 : 0

  name = "${var.name}-sensor"
  properties {
    description           = "IoT sensor publishing readings to ${var.data_topic}"
    searchable_attributes = ["site", "model"]
  }
  tags = var.tags
}

# Devices: one certificate per device, attached to a thing whose name is the device id and
# MQTT client id. IsAttached binds the certificate to that thing: another device's certificate
# cannot connect under this client id, and a device can publish only its own status.
resource "aws_iot_policy" "device" {
  count = var.tagged_resources_enabled ? 1 : 0

  name = "${var.name}-device"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Action    = "iot:Connect"
        Resource  = "${local.arn_prefix}:client/$${iot:Connection.Thing.ThingName}"
        Condition = { Bool = { "iot:Connection.Thing.IsAttached" = "true" } }
      },
      {
        Effect = "Allow"
        Action = ["iot:Publish", "iot:RetainPublish"]
        Resource = [
          "${local.arn_prefix}:topic/${local.device_data_topic}",
          "${local.arn_prefix}:topic/${var.status_topic_prefix}/$${iot:Connection.Thing.ThingName}",
        ]
      },
    ]
  })
  tags = var.tags
}

# The collector: connects only with its own client-id prefix, subscribes to the data topic
# through the shared group and to the status topics, receives those, nothing else (it never
# publishes).
resource "aws_iot_policy" "collector" {
  count = var.tagged_resources_enabled ? 1 : 0

  name = "${var.name}-collector"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = "iot:Connect"
        Resource = "${local.arn_prefix}:client/${var.collector_client_id_prefix}*"
      },
      {
        Effect = "Allow"
        Action = "iot:Subscribe"
        Resource = [
          "${local.arn_prefix}:topicfilter/$share/${var.shared_group}/${local.data_filter}",
          "${local.arn_prefix}:topicfilter/${local.data_filter}",
          "${local.arn_prefix}:topicfilter/${var.status_topic_prefix}/+",
          "${local.arn_prefix}:topicfilter/$share/${var.shared_group}/${var.status_topic_prefix}/+",
        ]
      },
      {
        Effect = "Allow"
        Action = "iot:Receive"
        Resource = [
          "${local.arn_prefix}:topic/${local.data_topics}",
          "${local.arn_prefix}:topic/${var.status_topic_prefix}/*",
        ]
      },
    ]
  })
  tags = var.tags
}

resource "aws_iot_certificate" "collector" {
  active = true
  csr    = var.collector_csr_pem != "" ? var.collector_csr_pem : null
}

resource "aws_iot_policy_attachment" "collector" {
  count = var.tagged_resources_enabled ? 1 : 0

  policy = aws_iot_policy.collector[0].name
  target = aws_iot_certificate.collector.arn
}
