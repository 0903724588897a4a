# flowbot on AWS: RTMP producers on Fargate -> Kinesis -> GPU processors (KCL on
# an ECS Spot capacity provider that scales to zero) -> Supabase; a coordinator
# Lambda behind a function URL; a Step Functions workflow at session end.
# Modules: data (applicable alone), network, compute, monitoring.

locals {
  kcl_application_name = "${var.project_name}-processor"
  # Where scripts/deploy bakes the model inside the processor image.
  asr_model_path = "/opt/models/${var.whisper_model}"
  diarization    = var.huggingface_token == "" && var.diarization == "pyannote" ? "offline" : var.diarization
}

module "data" {
  source = "./modules/data"

  name                      = var.project_name
  kcl_application_name      = local.kcl_application_name
  kinesis_stream_mode       = var.kinesis_stream_mode
  kinesis_shard_count       = var.kinesis_shard_count
  kinesis_retention_hours   = var.kinesis_retention_hours
  archive_retention_days    = var.archive_retention_days
  supabase_service_key      = var.supabase_service_key
  supabase_jwt_secret       = var.supabase_jwt_secret
  huggingface_token         = var.huggingface_token
  deletion_protection       = var.deletion_protection
  log_retention_days        = var.log_retention_days
  workflow_max_wait_seconds = var.workflow_max_wait_seconds
  notes_provider            = var.notes_provider
  bedrock_model_id          = var.bedrock_model_id
  bedrock_region            = var.bedrock_region
}

module "network" {
  source = "./modules/network"

  name                       = var.project_name
  vpc_cidr                   = var.vpc_cidr
  az_count                   = var.az_count
  single_nat_gateway         = var.single_nat_gateway
  enable_interface_endpoints = var.enable_interface_endpoints
  rtmp_allowed_cidrs         = var.rtmp_allowed_cidrs
  kms_key_arn                = module.data.kms_key_arn
  log_retention_days         = var.log_retention_days
}

module "compute" {
  source = "./modules/compute"

  name                             = var.project_name
  data                             = module.data
  network                          = module.network
  kcl_application_name             = local.kcl_application_name
  image_tag                        = var.image_tag
  lambda_zip_path                  = var.lambda_zip_path
  supabase_url                     = var.supabase_url
  asr_model                        = local.asr_model_path
  diarization                      = nonsensitive(local.diarization)
  window_seconds                   = var.window_seconds
  workflow_timeout_seconds         = var.workflow_max_wait_seconds
  gpu_instance_types               = var.gpu_instance_types
  gpu_asg_min_size                 = var.whisper_asg_min_size
  gpu_asg_max_size                 = var.whisper_asg_max_size
  gpu_ami_ssm_parameter            = var.gpu_ami_ssm_parameter
  gpu_root_volume_gb               = var.gpu_root_volume_gb
  processor_cpu                    = var.processor_cpu
  processor_memory_reservation     = var.processor_memory_reservation
  sessions_per_gpu_worker          = var.sessions_per_gpu_worker
  scale_out_lag_seconds            = var.scale_out_lag_seconds
  scale_in_idle_minutes            = var.scale_in_idle_minutes
  coordinator_reserved_concurrency = var.coordinator_reserved_concurrency
  cors_allowed_origins             = var.cors_allowed_origins
  log_retention_days               = var.log_retention_days
}

module "monitoring" {
  source = "./modules/monitoring"

  name                   = var.project_name
  kms_key_arn            = module.data.kms_key_arn
  alarm_email            = var.alarm_email
  stream_name            = module.data.stream_name
  metrics_namespace      = module.data.names.metrics_namespace
  function_names         = module.compute.function_names
  state_machine_arn      = module.data.state_machine_arn
  cluster_name           = module.compute.cluster_name
  processor_service_name = module.compute.processor_service_name
  gpu_asg_name           = module.compute.gpu_asg_name
}
