output "names" {
  description = "Names of the compute resources this module's roles are scoped to; the compute module must use exactly these."
  value = {
    cluster              = local.cluster_name
    gpu_asg              = local.gpu_asg_name
    producer_family      = local.producer_family
    processor_family     = local.processor_family
    producer_repository  = local.producer_repository
    processor_repository = local.processor_repository
    functions            = local.functions
    log_groups           = local.log_groups
    metrics_namespace    = local.metrics_namespace
    state_index          = local.state_index
  }
}

output "kms_key_arn" {
  description = "The deployment's customer-managed key."
  value       = aws_kms_key.main.arn
}

output "stream_name" {
  description = "Kinesis stream of audio frames (FLOWBOT_KINESIS_STREAM_NAME)."
  value       = aws_kinesis_stream.audio.name
}

output "stream_arn" {
  description = "ARN of the audio stream."
  value       = aws_kinesis_stream.audio.arn
}

output "archive_bucket" {
  description = "S3 bucket of archived window audio (FLOWBOT_ARCHIVE_BUCKET)."
  value       = aws_s3_bucket.archive.bucket
}

output "sessions_table" {
  description = "DynamoDB table of session state (FLOWBOT_SESSIONS_TABLE)."
  value       = aws_dynamodb_table.sessions.name
}

output "secret_arns" {
  description = "Secrets Manager ARNs by name."
  value       = local.secret_arns
}

output "secret_env" {
  description = "Environment variable each secret is injected as."
  value       = { for k, s in local.secrets : k => s.env }
}

output "secrets_with_value" {
  description = "Secrets that hold a value (tasks only reference those)."
  value       = local.secrets_with_value
}

output "state_machine_arn" {
  description = "End-of-session workflow (FLOWBOT_STATE_MACHINE_ARN)."
  value       = aws_sfn_state_machine.workflow.arn
}

output "state_machine_name" {
  description = "Name of the workflow state machine."
  value       = aws_sfn_state_machine.workflow.name
}

output "workflow_mock_definition" {
  description = "The same workflow with Pass states replaying $.mock instead of Lambda tasks (for emulator tests)."
  value       = local.workflow_mock_definition
}

output "role_arns" {
  description = "IAM role ARNs by purpose."
  value = {
    producer_task       = aws_iam_role.producer_task.arn
    processor_task      = aws_iam_role.processor_task.arn
    producer_execution  = aws_iam_role.execution["producer"].arn
    processor_execution = aws_iam_role.execution["processor"].arn
    workflow            = aws_iam_role.workflow.arn
    lambda              = { for k, r in aws_iam_role.lambda : k => r.arn }
  }
}

output "notes" {
  description = "Notes provider settings for the workflow functions (FLOWBOT_NOTES_*)."
  value = {
    provider  = var.notes_provider
    model_id  = var.bedrock_model_id
    region    = local.bedrock_region
    model_arn = local.bedrock_model_arn
  }
}
