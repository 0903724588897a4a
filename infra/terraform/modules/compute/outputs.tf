output "coordinator_url" {
  description = "Function URL of the coordinator API."
  value       = aws_lambda_function_url.coordinator.function_url
}

output "ecr_producer_url" {
  description = "ECR repository of the producer image."
  value       = aws_ecr_repository.this["producer"].repository_url
}

output "ecr_processor_url" {
  description = "ECR repository of the processor image."
  value       = aws_ecr_repository.this["processor"].repository_url
}

output "cluster_name" {
  description = "ECS cluster."
  value       = aws_ecs_cluster.main.name
}

output "processor_service_name" {
  description = "ECS service of the GPU processors."
  value       = aws_ecs_service.processor.name
}

output "gpu_asg_name" {
  description = "Auto Scaling group of GPU Spot workers."
  value       = aws_autoscaling_group.gpu.name
}

output "function_names" {
  description = "Lambda function names by role."
  value       = { for k, f in aws_lambda_function.this : k => f.function_name }
}

output "producer_task_definition" {
  description = "Family of the producer task definition (RunTask uses its latest revision)."
  value       = aws_ecs_task_definition.producer.family
}
