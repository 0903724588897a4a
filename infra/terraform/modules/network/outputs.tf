output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.main.id
}

output "public_subnet_ids" {
  description = "Public subnets (producer tasks)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets (GPU workers)."
  value       = aws_subnet.private[*].id
}

output "producer_security_group_id" {
  description = "Security group of producer tasks."
  value       = aws_security_group.producer.id
}

output "processor_security_group_id" {
  description = "Security group of GPU instances and processor tasks."
  value       = aws_security_group.processor.id
}
