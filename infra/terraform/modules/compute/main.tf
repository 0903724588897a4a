data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name
  names  = var.data.names

  # Settings shared by every component (contracts/settings.py, FLOWBOT_*).
  common_env = {
    FLOWBOT_AWS_REGION           = local.region
    FLOWBOT_STREAM               = "kinesis"
    FLOWBOT_KINESIS_STREAM_NAME  = var.data.stream_name
    FLOWBOT_STORE                = "supabase"
    FLOWBOT_SESSION_STORE        = "dynamodb"
    FLOWBOT_SESSIONS_TABLE       = var.data.sessions_table
    FLOWBOT_ARCHIVE              = "s3"
    FLOWBOT_ARCHIVE_BUCKET       = var.data.archive_bucket
    FLOWBOT_KCL_APPLICATION_NAME = var.kcl_application_name
    FLOWBOT_SUPABASE_URL         = var.supabase_url
    FLOWBOT_LOG_FORMAT           = "json"
    FLOWBOT_LOG_LEVEL            = "INFO"
  }

  producer_env = merge(local.common_env, {
    FLOWBOT_DATA_DIR = "/tmp/flowbot"
    # nginx in the task listens on this address; Zoom reaches it through the task's public IP.
    FLOWBOT_HOST = "0.0.0.0"
  })

  processor_env = merge(local.common_env, {
    FLOWBOT_ASR_MODEL          = var.asr_model
    FLOWBOT_ASR_DEVICE         = "cuda"
    FLOWBOT_DIARIZATION        = var.diarization
    FLOWBOT_DIARIZATION_DEVICE = "cuda"
    FLOWBOT_WINDOW_SECONDS     = tostring(var.window_seconds)
    # The image bakes the offline diarization weights under its data dir.
    FLOWBOT_DATA_DIR = "/opt/flowbot"
    }, var.diarization == "pyannote" ? {
    # Baked by processor/Dockerfile when built with the hf_token secret.
    FLOWBOT_DIARIZATION_PIPELINE = "/opt/models/pyannote-pipeline"
  } : {})

  # Secrets the processor gets injected by ECS (only those that hold a value).
  processor_secrets = [
    for k in ["supabase_service_key", "huggingface_token"] :
    { name = var.data.secret_env[k], valueFrom = var.data.secret_arns[k] }
    if contains(var.data.secrets_with_value, k)
  ]

  lambda_env = merge(local.common_env, {
    FLOWBOT_DATA_DIR                 = "/tmp/flowbot"
    FLOWBOT_ECS_CLUSTER              = aws_ecs_cluster.main.name
    FLOWBOT_PRODUCER_TASK_DEFINITION = aws_ecs_task_definition.producer.family
    FLOWBOT_PRODUCER_SUBNETS         = join(",", var.network.public_subnet_ids)
    FLOWBOT_PRODUCER_SECURITY_GROUPS = var.network.producer_security_group_id
    FLOWBOT_GPU_ASG_NAME             = aws_autoscaling_group.gpu.name
    FLOWBOT_STATE_MACHINE_ARN        = var.data.state_machine_arn
    FLOWBOT_WORKFLOW_TIMEOUT_SECONDS = tostring(var.workflow_timeout_seconds)
    # The notes step: Bedrock (the role may invoke only this model), falling back to
    # the offline notes in time to store them within the function's timeout.
    FLOWBOT_NOTES_PROVIDER        = var.data.notes.provider
    FLOWBOT_NOTES_MODEL           = var.data.notes.model_id
    FLOWBOT_NOTES_REGION          = var.data.notes.region
    FLOWBOT_NOTES_TIMEOUT_SECONDS = tostring(local.lambda_handlers.generate_notes.timeout - 60)
    METRICS_NAMESPACE             = local.names.metrics_namespace
    # control/lambda_handlers.py reads these secrets at cold start into the
    # named FLOWBOT_* variables, so no secret value sits in the function config.
    SECRETS_TO_ENV = jsonencode({
      for k in ["supabase_service_key", "supabase_jwt_secret"] : var.data.secret_env[k] => var.data.secret_arns[k]
    })
  })
}

# --- Logs -------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "tasks" {
  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (cost); these are operational logs.
  for_each          = { producer = local.names.log_groups.producer, processor = local.names.log_groups.processor }
  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = var.data.kms_key_arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (cost); these are operational logs.
  for_each          = local.names.functions
  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.data.kms_key_arn
  tags              = var.tags
}

# --- Cluster ------------------------------------------------------------------------

resource "aws_ecs_cluster" "main" {
  name = local.names.cluster
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  tags = var.tags
}

resource "aws_ecs_capacity_provider" "gpu" {
  name = "${var.name}-gpu"

  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.gpu.arn
    managed_termination_protection = "ENABLED"
    managed_draining               = "ENABLED"

    # ECS sizes the group to the processor tasks that need placing; with no
    # task the group goes to zero instances.
    managed_scaling {
      status                    = "ENABLED"
      target_capacity           = 100
      minimum_scaling_step_size = 1
      maximum_scaling_step_size = var.gpu_asg_max_size
      instance_warmup_period    = 300
    }
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE", aws_ecs_capacity_provider.gpu.name]
}

# --- Producer: one Fargate task per session, started by the coordinator -----------

resource "aws_ecs_task_definition" "producer" {
  #checkov:skip=CKV_AWS_249:The roles differ (producer_execution vs producer_task from the data module); checkov cannot resolve module object inputs.
  #checkov:skip=CKV_AWS_336:nginx-rtmp writes its pid, temp and log files under paths set by producer/nginx/nginx.conf; the image is immutable and each task lives for one meeting.
  family                   = local.names.producer_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = var.data.role_arns.producer_execution
  task_role_arn            = var.data.role_arns.producer_task

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name         = "producer"
    image        = "${aws_ecr_repository.this["producer"].repository_url}:${var.image_tag}"
    essential    = true
    portMappings = [{ containerPort = 1935, protocol = "tcp" }]
    # PRODUCER_SESSION_ID and PRODUCER_STREAM_KEY come per task as RunTask overrides
    # (control/aws_launcher.py -> producer/service.py).
    environment = [for k, v in local.producer_env : { name = k, value = v }]
    # StopTask sends SIGTERM; the producer writes the END record, then exits.
    stopTimeout            = 120
    linuxParameters        = { initProcessEnabled = true }
    readonlyRootFilesystem = false
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.tasks["producer"].name
        awslogs-region        = local.region
        awslogs-stream-prefix = "producer"
      }
    }
  }])

  tags = var.tags
}

# --- Processor: ECS service on the GPU Spot capacity provider ----------------------

resource "aws_ecs_task_definition" "processor" {
  #checkov:skip=CKV_AWS_249:The roles differ (processor_execution vs processor_task from the data module); checkov cannot resolve module object inputs.
  #checkov:skip=CKV_AWS_336:torch, CUDA and the KCL daemon write caches and temp files under paths they choose; the image is immutable and tasks are disposable.
  family                   = local.names.processor_family
  requires_compatibilities = ["EC2"]
  network_mode             = "awsvpc"
  execution_role_arn       = var.data.role_arns.processor_execution
  task_role_arn            = var.data.role_arns.processor_task

  container_definitions = jsonencode([{
    name                 = "processor"
    image                = "${aws_ecr_repository.this["processor"].repository_url}:${var.image_tag}"
    essential            = true
    cpu                  = var.processor_cpu
    memoryReservation    = var.processor_memory_reservation
    resourceRequirements = [{ type = "GPU", value = "1" }]
    environment          = [for k, v in local.processor_env : { name = k, value = v }]
    secrets              = local.processor_secrets
    # Spot notice / scale-in / deploy: SIGTERM, then 120 s for KCL's graceful
    # shutdown (shutdown_requested -> checkpoint) before SIGKILL.
    stopTimeout            = 120
    linuxParameters        = { initProcessEnabled = true }
    readonlyRootFilesystem = false
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.tasks["processor"].name
        awslogs-region        = local.region
        awslogs-stream-prefix = "processor"
      }
    }
  }])

  tags = var.tags
}

resource "aws_ecs_service" "processor" {
  name            = "${var.name}-processor"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.processor.arn
  desired_count   = 0 # Application Auto Scaling owns it from here (scaling.tf)

  capacity_provider_strategy {
    capacity_provider = aws_ecs_capacity_provider.gpu.name
    weight            = 1
    base              = 0
  }

  network_configuration {
    subnets          = var.network.private_subnet_ids
    security_groups  = [var.network.processor_security_group_id]
    assign_public_ip = false
  }

  # One GPU per task: a deploy stops the old task (graceful KCL shutdown) before
  # the new one starts instead of needing a second GPU.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"
  tags                    = var.tags

  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_ecs_cluster_capacity_providers.main]
}
