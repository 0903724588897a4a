variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "tags" {
  description = "Tags put on every resource of this module."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones to spread subnets over (2-3); more zones = more Spot pools for the GPU group."
  type        = number
  default     = 2
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all private subnets (cheaper) instead of one per zone (zone-failure tolerant)."
  type        = bool
  default     = true
}

variable "enable_interface_endpoints" {
  description = "Interface endpoints for Kinesis, ECR, Secrets Manager and CloudWatch Logs (keeps that traffic off the NAT gateway)."
  type        = bool
  default     = true
}

variable "rtmp_allowed_cidrs" {
  description = "Who may publish RTMP to producer tasks (e.g. Zoom's published ranges); 0.0.0.0/0 = anyone with a stream key."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "kms_key_arn" {
  description = "Key that encrypts the flow-log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the VPC flow-log group."
  type        = number
  default     = 90
}
