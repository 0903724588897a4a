variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "tags" {
  description = "Tags put on every resource of this module."
  type        = map(string)
  default     = {}
}

variable "data" {
  description = "Outputs of the data module (names, ARNs, roles, secrets)."
  type = object({
    names = object({
      cluster              = string
      gpu_asg              = string
      producer_family      = string
      processor_family     = string
      producer_repository  = string
      processor_repository = string
      functions            = map(string)
      log_groups           = map(string)
      metrics_namespace    = string
      state_index          = string
    })
    kms_key_arn        = string
    stream_name        = string
    archive_bucket     = string
    sessions_table     = string
    state_machine_arn  = string
    secret_arns        = map(string)
    secret_env         = map(string)
    secrets_with_value = set(string)
    notes = object({
      provider  = string
      model_id  = string
      region    = string
      model_arn = string
    })
    role_arns = object({
      producer_task       = string
      processor_task      = string
      producer_execution  = string
      processor_execution = string
      workflow            = string
      lambda              = map(string)
    })
  })
}

variable "network" {
  description = "Outputs of the network module."
  type = object({
    public_subnet_ids           = list(string)
    private_subnet_ids          = list(string)
    producer_security_group_id  = string
    processor_security_group_id = string
  })
}

variable "kcl_application_name" {
  description = "KCL application name (FLOWBOT_KCL_APPLICATION_NAME)."
  type        = string
}

variable "image_tag" {
  description = "Tag of both container images in ECR (scripts/deploy uses the git commit)."
  type        = string
}

variable "lambda_zip_path" {
  description = "Zip of the project's packages and their Lambda dependencies (scripts/deploy/package-lambda)."
  type        = string
}

variable "supabase_url" {
  description = "Supabase project URL (FLOWBOT_SUPABASE_URL)."
  type        = string
}

variable "asr_model" {
  description = "FLOWBOT_ASR_MODEL inside the processor image: the folder the model was baked into."
  type        = string
}

variable "diarization" {
  description = "FLOWBOT_DIARIZATION: pyannote (baked published pipeline), offline (bundled weights) or none."
  type        = string
}

variable "window_seconds" {
  description = "FLOWBOT_WINDOW_SECONDS: longest transcription window."
  type        = number
}

variable "workflow_timeout_seconds" {
  description = "FLOWBOT_WORKFLOW_TIMEOUT_SECONDS: how long the workflow waits for windows."
  type        = number
}

variable "gpu_instance_types" {
  description = "GPU instance types for the Spot group, in order of preference (the first is the launch template's)."
  type        = list(string)
}

variable "gpu_asg_min_size" {
  description = "Minimum GPU instances (0 = scale to zero)."
  type        = number
}

variable "gpu_asg_max_size" {
  description = "Maximum GPU instances (and processor tasks; one task per GPU)."
  type        = number
}

variable "gpu_ami_ssm_parameter" {
  description = "SSM parameter holding the ECS GPU-optimised AMI id."
  type        = string
}

variable "gpu_root_volume_gb" {
  description = "Root volume of GPU instances (the processor image with its baked models is ~15 GB)."
  type        = number
}

variable "processor_cpu" {
  description = "CPU units reserved by a processor task (4096 = 4 vCPU)."
  type        = number
}

variable "processor_memory_reservation" {
  description = "Memory (MiB) reserved by a processor task."
  type        = number
}

variable "sessions_per_gpu_worker" {
  description = "Live sessions one processor task keeps up with; scaling adds a task per this many."
  type        = number
}

variable "scale_out_lag_seconds" {
  description = "Iterator age above which one more processor task is added."
  type        = number
}

variable "scale_in_idle_minutes" {
  description = "Minutes with no incoming audio and a drained stream before processors go to zero."
  type        = number
}

variable "coordinator_reserved_concurrency" {
  description = "Concurrent coordinator invocations allowed (bounds abuse of the public URL)."
  type        = number
}

variable "cors_allowed_origins" {
  description = "Browser origins allowed to call the coordinator URL."
  type        = list(string)
}

variable "log_retention_days" {
  description = "Retention of the log groups."
  type        = number
}

variable "manage_function_url_invoke_permission" {
  description = "Add the lambda:InvokeFunction permission (scoped to function-URL calls) that URLs created since Oct 2025 need; runs the AWS CLI because provider 5.x cannot express the InvokedViaFunctionUrl condition."
  type        = bool
  default     = true
}
