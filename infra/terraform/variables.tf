variable "project_name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "flow-ai-bot"
}

variable "aws_region" {
  description = "Region to deploy to (needs g4dn Spot capacity)."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

# --- Supabase / Hugging Face ---------------------------------------------------------

variable "supabase_url" {
  description = "Supabase project URL, e.g. https://abcd.supabase.co."
  type        = string
  validation {
    condition     = can(regex("^https://", var.supabase_url))
    error_message = "supabase_url must be an https:// URL."
  }
}

variable "supabase_service_key" {
  description = "Supabase service-role key (Secrets Manager)."
  type        = string
  sensitive   = true
}

variable "supabase_jwt_secret" {
  description = "Supabase JWT secret (Project settings -> API); the coordinator verifies user tokens with it."
  type        = string
  sensitive   = true
}

variable "huggingface_token" {
  description = "Hugging Face token (gated pyannote pipeline); also used by scripts/deploy to bake the pipeline into the image. Empty = diarization 'offline'."
  type        = string
  sensitive   = true
  default     = ""
}

# --- Processing ------------------------------------------------------------------------

variable "whisper_model" {
  description = "faster-whisper model baked into the processor image (scripts/deploy passes the same name to docker build)."
  type        = string
  default     = "large-v3-turbo"
}

variable "diarization" {
  description = "pyannote (published pipeline, needs huggingface_token at build), offline (bundled weights) or none."
  type        = string
  default     = "pyannote"
  validation {
    condition     = contains(["pyannote", "offline", "none"], var.diarization)
    error_message = "diarization must be pyannote, offline or none."
  }
}

variable "window_seconds" {
  description = "Longest transcription window (cut at the last silence before it)."
  type        = number
  default     = 30
}

variable "image_tag" {
  description = "Tag of the container images in ECR (scripts/deploy sets the git commit)."
  type        = string
  default     = "latest"
}

variable "lambda_zip_path" {
  description = "Lambda bundle built by scripts/deploy/package-lambda."
  type        = string
  default     = "../../build/lambda.zip"
}

# --- Meeting notes ------------------------------------------------------------------------

variable "notes_provider" {
  description = "Who writes the meeting notes in the workflow: bedrock (Amazon Bedrock Converse; on any failure the offline notes are written instead) or offline (extractive, no model)."
  type        = string
  default     = "bedrock"
  validation {
    condition     = contains(["bedrock", "offline"], var.notes_provider)
    error_message = "notes_provider must be bedrock or offline."
  }
}

variable "bedrock_model_id" {
  description = "Bedrock foundation model the notes step may call (the only one its role can invoke); enable access to it in the Bedrock console first."
  type        = string
  default     = "anthropic.claude-3-haiku-20240307-v1:0"
  validation {
    condition     = can(regex("^[a-z0-9-]+\\.[A-Za-z0-9.:_-]+$", var.bedrock_model_id))
    error_message = "bedrock_model_id must be a foundation model id such as anthropic.claude-3-haiku-20240307-v1:0."
  }
}

variable "bedrock_region" {
  description = "Region the Bedrock model is called in; empty = aws_region."
  type        = string
  default     = ""
}

# --- Kinesis ------------------------------------------------------------------------------

variable "kinesis_stream_mode" {
  description = "ON_DEMAND or PROVISIONED."
  type        = string
  default     = "ON_DEMAND"
}

variable "kinesis_shard_count" {
  description = "Shards when PROVISIONED."
  type        = number
  default     = 1
}

variable "kinesis_retention_hours" {
  description = "Record retention (24-8760 h)."
  type        = number
  default     = 24
}

# --- GPU workers ------------------------------------------------------------------------------

variable "gpu_instance_types" {
  description = "Spot instance types for processors, in order of preference."
  type        = list(string)
  default     = ["g4dn.xlarge", "g4dn.2xlarge"]
}

variable "whisper_asg_min_size" {
  description = "Minimum GPU instances (0 = scale to zero when idle)."
  type        = number
  default     = 0
}

variable "whisper_asg_max_size" {
  description = "Maximum GPU instances (one processor task each)."
  type        = number
  default     = 4
}

variable "gpu_ami_ssm_parameter" {
  description = "SSM parameter of the ECS GPU-optimised AMI."
  type        = string
  default     = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
}

variable "gpu_root_volume_gb" {
  description = "Root volume size of GPU instances."
  type        = number
  default     = 100
}

variable "processor_cpu" {
  description = "CPU units of a processor task (g4dn.xlarge has 4096)."
  type        = number
  default     = 3584
}

variable "processor_memory_reservation" {
  description = "Memory (MiB) reserved by a processor task (g4dn.xlarge offers ~15,300 to tasks)."
  type        = number
  default     = 12288
}

variable "sessions_per_gpu_worker" {
  description = "Live sessions one processor task keeps up with (measure on your GPU: large-v3-turbo + pyannote on a T4)."
  type        = number
  default     = 4
}

variable "scale_out_lag_seconds" {
  description = "Iterator age that adds one more processor task."
  type        = number
  default     = 60
}

variable "scale_in_idle_minutes" {
  description = "Idle minutes (no audio in, stream drained) before processors go to zero."
  type        = number
  default     = 15
}

# --- Network / access ----------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "VPC CIDR."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones used."
  type        = number
  default     = 2
}

variable "single_nat_gateway" {
  description = "One shared NAT gateway (cheaper) instead of one per zone."
  type        = bool
  default     = true
}

variable "enable_interface_endpoints" {
  description = "Interface endpoints for Kinesis, ECR, Secrets Manager, CloudWatch Logs."
  type        = bool
  default     = true
}

variable "rtmp_allowed_cidrs" {
  description = "CIDRs allowed to publish RTMP (e.g. Zoom's published ranges)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "cors_allowed_origins" {
  description = "Browser origins allowed to call the coordinator URL."
  type        = list(string)
  default     = ["*"]
}

variable "coordinator_reserved_concurrency" {
  description = "Concurrent coordinator invocations allowed."
  type        = number
  default     = 10
}

# --- Workflow, logs, alarms ----------------------------------------------------------------

variable "workflow_max_wait_seconds" {
  description = "How long the end-of-session workflow waits for windows before finishing as partial."
  type        = number
  default     = 3600
}

variable "archive_retention_days" {
  description = "Days archived window audio is kept."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention."
  type        = number
  default     = 90
}

variable "alarm_email" {
  description = "Where alarms are mailed (empty = SNS topic only)."
  type        = string
  default     = ""
}

variable "deletion_protection" {
  description = "Protect the sessions table from deletion."
  type        = bool
  default     = true
}
