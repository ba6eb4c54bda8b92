# The iot module, AWS mocked: shared or per-device data topics; certificate from AWS or a CSR.

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  name = "test"
}

run "shared_data_topic" {
  command = plan

  assert {
    condition     = strcontains(aws_iot_policy.collector[0].policy, "topicfilter/$share/iot-collectors/iot/data\"")
    error_message = "the collector subscribes to the data topic through its shared group"
  }

  assert {
    condition     = aws_iot_certificate.collector.csr == null
    error_message = "without a CSR, AWS generates the key pair"
  }
}

run "per_device_topics" {
  command = plan

  variables {
    device_topics = true
  }

  assert {
    condition     = strcontains(aws_iot_policy.device[0].policy, "topic/iot/data/$${iot:Connection.Thing.ThingName}")
    error_message = "a device may publish only to its own data topic"
  }

  assert {
    condition     = strcontains(aws_iot_policy.collector[0].policy, "topicfilter/$share/iot-collectors/iot/data/+")
    error_message = "the collector reads iot/data/+"
  }
}
