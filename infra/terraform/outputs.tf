output "coordinator_lambda_url" {
  description = "Coordinator API (POST JSON with an action and a Supabase JWT)."
  value       = module.compute.coordinator_url
}

output "ecr_producer_url" {
  description = "ECR repository of the producer image (replaces the seed's ecr_bot_producer_url)."
  value       = module.compute.ecr_producer_url
}

output "ecr_processor_url" {
  description = "ECR repository of the processor image (replaces the seed's ecr_whisper_consumer_url)."
  value       = module.compute.ecr_processor_url
}

output "kinesis_stream_name" {
  description = "Kinesis stream of audio frames (replaces the seed's SQS queue)."
  value       = module.data.stream_name
}

output "archive_bucket" {
  description = "S3 bucket of archived window audio (replaces the seed's audio_chunks_bucket)."
  value       = module.data.archive_bucket
}

output "sessions_table" {
  description = "DynamoDB table of session state."
  value       = module.data.sessions_table
}

output "state_machine_arn" {
  description = "End-of-session workflow."
  value       = module.data.state_machine_arn
}

output "cluster_name" {
  description = "ECS cluster."
  value       = module.compute.cluster_name
}

output "gpu_asg_name" {
  description = "GPU Spot Auto Scaling group."
  value       = module.compute.gpu_asg_name
}

output "huggingface_secret_arn" {
  description = "Secret scripts/deploy reads the Hugging Face token from when baking the pyannote pipeline."
  value       = module.data.secret_arns.huggingface_token
}

output "diarization" {
  description = "Diarization the processor runs with (offline when no Hugging Face token was given)."
  value       = nonsensitive(local.diarization)
}

output "whisper_model" {
  description = "Model name scripts/deploy bakes into the processor image."
  value       = var.whisper_model
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = module.monitoring.dashboard_name
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.monitoring.alarm_topic_arn
}
