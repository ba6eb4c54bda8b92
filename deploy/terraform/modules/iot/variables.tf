variable "name" {
  type        = string
  description = "Name prefix of the IoT resources."
}

variable "data_topic" {
  type        = string
  description = "Topic devices publish readings to (IOT_MQTT_TOPICS of the collector)."
  default     = "iot/data"
}

variable "device_topics" {
  type        = bool
  description = "Per-device data topics: each device may publish only to <data_topic>/<its thing name>, the collector reads <data_topic>/+ (set IOT_MQTT_TOPICS=<data_topic>/+ and IOT_MQTT_DEVICE_TOPICS=true, Helm mqtt.deviceTopics)."
  default     = false
}

variable "status_topic_prefix" {
  type        = string
  description = "Prefix of each device's presence topic: <prefix>/<client id> (Last Will, online)."
  default     = "iot/status"
}

variable "collector_client_id_prefix" {
  type        = string
  description = "The collector may connect only with client ids starting with this (its pod names)."
  default     = "iot-collector-"
}

variable "shared_group" {
  type        = string
  description = "MQTT shared-subscription group of the collector replicas (IOT_MQTT_SHARED_GROUP)."
  default     = "iot-collectors"
}

variable "collector_csr_pem" {
  type        = string
  description = "CSR of the collector's key pair (PEM). Empty: AWS generates the key pair and Terraform stores it in Secrets Manager (the key then also lives in the encrypted state)."
  default     = ""
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource that supports them."
  default     = {}
}

variable "tagged_resources_enabled" {
  type        = bool
  description = "Create the thing type and policies (taggable IoT resources). Only the moto test turns this off: moto does not implement IoT ListTagsForResource."
  default     = true
}
