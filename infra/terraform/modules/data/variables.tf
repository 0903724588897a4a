variable "name" {
  description = "Prefix of every resource name (the project name)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name: 3-32 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags put on every resource of this module."
  type        = map(string)
  default     = {}
}

variable "kinesis_stream_mode" {
  description = "ON_DEMAND (pay per GB, scales itself) or PROVISIONED (fixed shard count)."
  type        = string
  default     = "ON_DEMAND"
  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.kinesis_stream_mode)
    error_message = "kinesis_stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "kinesis_shard_count" {
  description = "Shards when kinesis_stream_mode = PROVISIONED (one shard takes ~30 live sessions at 32 KB/s each)."
  type        = number
  default     = 1
}

variable "kinesis_retention_hours" {
  description = "How long audio records stay in the stream (24-8760 h); a worker outage longer than this loses audio."
  type        = number
  default     = 24
  validation {
    condition     = var.kinesis_retention_hours >= 24 && var.kinesis_retention_hours <= 8760
    error_message = "kinesis_retention_hours must be between 24 and 8760."
  }
}

variable "kcl_application_name" {
  description = "KCL application name = its DynamoDB lease table (FLOWBOT_KCL_APPLICATION_NAME)."
  type        = string
}

variable "archive_retention_days" {
  description = "Days window audio stays in the archive bucket before it expires."
  type        = number
  default     = 30
}

variable "supabase_service_key" {
  description = "Supabase service-role key (stored in Secrets Manager)."
  type        = string
  sensitive   = true
}

variable "supabase_jwt_secret" {
  description = "Secret that signs Supabase user JWTs; the coordinator verifies callers with it."
  type        = string
  sensitive   = true
}

variable "huggingface_token" {
  description = "Hugging Face token for the gated pyannote pipeline; empty = no secret value is stored."
  type        = string
  sensitive   = true
  default     = ""
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored (0 = delete at once; tests use 0)."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Protect the sessions table against deletion."
  type        = bool
  default     = true
}

variable "force_destroy_archive" {
  description = "Let terraform destroy empty the archive bucket (tests; keep false in production)."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Retention of the workflow's CloudWatch log group."
  type        = number
  default     = 90
}

variable "workflow_max_wait_seconds" {
  description = "Longest the workflow waits for windows when the execution input does not say (FLOWBOT_WORKFLOW_TIMEOUT_SECONDS)."
  type        = number
  default     = 3600
}

variable "workflow_first_poll_seconds" {
  description = "First wait between window checks; doubles up to workflow_max_poll_seconds."
  type        = number
  default     = 10
}

variable "workflow_max_poll_seconds" {
  description = "Longest wait between two window checks."
  type        = number
  default     = 120
}

variable "workflow_mock_tasks" {
  description = "Render the workflow with Pass states that replay recorded outputs from the input instead of Lambda tasks (emulator tests only)."
  type        = bool
  default     = false
}

variable "notes_provider" {
  description = "bedrock: the generate-notes function may invoke bedrock_model_id; offline: no Bedrock access."
  type        = string
  default     = "bedrock"
  validation {
    condition     = contains(["bedrock", "offline"], var.notes_provider)
    error_message = "notes_provider must be bedrock or offline."
  }
}

variable "bedrock_model_id" {
  description = "The one Bedrock foundation model the generate-notes function may invoke."
  type        = string
  default     = "anthropic.claude-3-haiku-20240307-v1:0"
}

variable "bedrock_region" {
  description = "Region of the Bedrock model; empty = the deployment's region."
  type        = string
  default     = ""
}
