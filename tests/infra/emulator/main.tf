# Applies the data-plane module (infra/terraform/modules/data) against the
# emulators: LocalStack for Kinesis, S3, Secrets Manager, Step Functions, IAM,
# KMS, CloudWatch Logs and STS; moto for DynamoDB. Used by tests/infra only.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.31, < 6.0"
    }
  }
}

variable "localstack_endpoint" {
  description = "LocalStack gateway, e.g. http://127.0.0.1:4566."
  type        = string
}

variable "dynamodb_endpoint" {
  description = "moto server for DynamoDB."
  type        = string
}

variable "name" {
  description = "Resource name prefix."
  type        = string
  default     = "flowbot-ci"
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    cloudwatch     = var.localstack_endpoint
    cloudwatchlogs = var.localstack_endpoint
    dynamodb       = var.dynamodb_endpoint
    iam            = var.localstack_endpoint
    kinesis        = var.localstack_endpoint
    kms            = var.localstack_endpoint
    s3             = var.localstack_endpoint
    secretsmanager = var.localstack_endpoint
    sfn            = var.localstack_endpoint
    sts            = var.localstack_endpoint
  }
}

module "data" {
  source = "../../../infra/terraform/modules/data"

  name                        = var.name
  kcl_application_name        = "${var.name}-processor"
  supabase_service_key        = "emulator-service-key"
  supabase_jwt_secret         = "emulator-jwt-secret"
  huggingface_token           = ""
  secret_recovery_window_days = 0
  deletion_protection         = false
  force_destroy_archive       = true
  log_retention_days          = 1
  workflow_first_poll_seconds = 1
  workflow_max_poll_seconds   = 2
  workflow_max_wait_seconds   = 5
}

output "stream_name" {
  value = module.data.stream_name
}

output "archive_bucket" {
  value = module.data.archive_bucket
}

output "sessions_table" {
  value = module.data.sessions_table
}

output "state_machine_arn" {
  value = module.data.state_machine_arn
}

output "workflow_mock_definition" {
  value = module.data.workflow_mock_definition
}

output "workflow_role_arn" {
  value = module.data.role_arns.workflow
}

output "secret_arns" {
  value = module.data.secret_arns
}

output "secrets_with_value" {
  value = module.data.secrets_with_value
}

output "kms_key_arn" {
  value = module.data.kms_key_arn
}

output "names" {
  value = module.data.names
}
