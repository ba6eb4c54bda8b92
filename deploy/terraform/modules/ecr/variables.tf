variable "name" {
  type        = string
  description = "Name of the image repository."
  default     = "iot-collector"
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for image encryption."
}

variable "keep_images" {
  type        = number
  description = "Number of most recent images kept; older ones expire."
  default     = 50
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
