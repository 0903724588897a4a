# Least-privilege roles. Every statement names its resources; the only "*"
# resources are for actions that AWS does not scope (noted inline).

locals {
  ecr_repo_arns = [
    for r in [local.producer_repository, local.processor_repository] :
    "arn:${local.partition}:ecr:${local.region}:${local.account}:repository/${r}"
  ]
  secret_arns = { for k, s in aws_secretsmanager_secret.this : k => s.arn }
}

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "assume_states" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

# --- ECS task execution roles (pull the image, write logs, inject secrets) ----

data "aws_iam_policy_document" "execution" {
  for_each = {
    producer  = { repo = local.producer_repository, log = local.log_groups.producer, secrets = [] }
    processor = { repo = local.processor_repository, log = local.log_groups.processor, secrets = ["supabase_service_key", "huggingface_token"] }
  }

  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = ["arn:${local.partition}:ecr:${local.region}:${local.account}:repository/${each.value.repo}"]
  }
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn_prefix}:${each.value.log}:*"]
  }
  dynamic "statement" {
    for_each = length(each.value.secrets) > 0 ? [1] : []
    content {
      sid       = "InjectSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [for s in each.value.secrets : local.secret_arns[s]]
    }
  }
  statement {
    sid       = "DecryptWithDeploymentKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role" "execution" {
  for_each           = data.aws_iam_policy_document.execution
  name               = "${var.name}-${each.key}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "execution" {
  for_each = data.aws_iam_policy_document.execution
  name     = "execution"
  role     = aws_iam_role.execution[each.key].id
  policy   = each.value.json
}

# --- Producer task: write frames to the stream -------------------------------

data "aws_iam_policy_document" "producer_task" {
  statement {
    sid       = "PutFrames"
    actions   = ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary", "kinesis:ListShards"]
    resources = [aws_kinesis_stream.audio.arn]
  }
  statement {
    sid       = "EncryptRecords"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
  # nginx's on_publish check reads the session; the first publish moves it
  # from starting to live (a conditional write).
  statement {
    sid       = "CheckAndMarkSessionLive"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem", "dynamodb:Query"]
    resources = [aws_dynamodb_table.sessions.arn, "${aws_dynamodb_table.sessions.arn}/index/*"]
  }
}

resource "aws_iam_role" "producer_task" {
  name               = "${var.name}-producer-task"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "producer_task" {
  name   = "producer"
  role   = aws_iam_role.producer_task.id
  policy = data.aws_iam_policy_document.producer_task.json
}

# --- Processor task: KCL consumer, archive writer, metrics -------------------

data "aws_iam_policy_document" "processor_task" {
  statement {
    sid = "ReadStream"
    actions = [
      "kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:ListShards",
      "kinesis:GetRecords", "kinesis:GetShardIterator",
    ]
    resources = [aws_kinesis_stream.audio.arn]
  }
  statement {
    sid       = "KclLeaseTable"
    actions   = ["dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:UpdateTable", "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [local.kcl_table_arns[0]]
  }
  statement {
    sid       = "KclLeaseOwnerIndex"
    actions   = ["dynamodb:Query"]
    resources = ["${local.kcl_table_arns[0]}/index/*"]
  }
  statement {
    sid       = "KclCoordinatorAndWorkerMetricsTables"
    actions   = ["dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = slice(local.kcl_table_arns, 1, 3)
  }
  statement {
    sid       = "ReadSessions"
    actions   = ["dynamodb:GetItem", "dynamodb:Query"]
    resources = [aws_dynamodb_table.sessions.arn, "${aws_dynamodb_table.sessions.arn}/index/*"]
  }
  statement {
    sid       = "ArchiveWindowAudio"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${aws_s3_bucket.archive.arn}/sessions/*"]
  }
  statement {
    sid       = "UseDeploymentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid       = "PublishMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource-level permissions; the namespace condition scopes it
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.kcl_application_name, local.metrics_namespace]
    }
  }
}

resource "aws_iam_role" "processor_task" {
  name               = "${var.name}-processor-task"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "processor_task" {
  name   = "processor"
  role   = aws_iam_role.processor_task.id
  policy = data.aws_iam_policy_document.processor_task.json
}

# --- Lambda roles --------------------------------------------------------------

data "aws_iam_policy_document" "lambda_common" {
  for_each = local.functions

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn_prefix}:/aws/lambda/${each.value}:*"]
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray segment APIs have no resource-level permissions
  }
  statement {
    sid       = "Sessions"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:Query", "dynamodb:Scan"]
    resources = [aws_dynamodb_table.sessions.arn, "${aws_dynamodb_table.sessions.arn}/index/*"]
  }
  statement {
    sid       = "ReadSupabaseSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.secret_arns.supabase_service_key, local.secret_arns.supabase_jwt_secret]
  }
  statement {
    sid       = "UseDeploymentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }

  dynamic "statement" {
    for_each = each.key == "coordinator" ? [1] : []
    content {
      sid       = "RunProducerTasks"
      actions   = ["ecs:RunTask"]
      resources = ["arn:${local.partition}:ecs:${local.region}:${local.account}:task-definition/${local.producer_family}:*"]
      condition {
        test     = "ArnEquals"
        variable = "ecs:cluster"
        values   = [local.cluster_arn]
      }
    }
  }
  dynamic "statement" {
    for_each = each.key == "coordinator" ? [1] : []
    content {
      sid       = "TagProducerTasksAtLaunch"
      actions   = ["ecs:TagResource"]
      resources = ["arn:${local.partition}:ecs:${local.region}:${local.account}:task/${local.cluster_name}/*"]
      condition {
        test     = "StringEquals"
        variable = "ecs:CreateAction"
        values   = ["RunTask"]
      }
    }
  }
  dynamic "statement" {
    for_each = each.key == "coordinator" ? [1] : []
    content {
      sid       = "WatchAndStopProducerTasks"
      actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
      resources = ["arn:${local.partition}:ecs:${local.region}:${local.account}:task/${local.cluster_name}/*"]
    }
  }
  dynamic "statement" {
    for_each = each.key == "coordinator" ? [1] : []
    content {
      sid       = "PassProducerRoles"
      actions   = ["iam:PassRole"]
      resources = [aws_iam_role.producer_task.arn, aws_iam_role.execution["producer"].arn]
      condition {
        test     = "StringEquals"
        variable = "iam:PassedToService"
        values   = ["ecs-tasks.amazonaws.com"]
      }
    }
  }
  dynamic "statement" {
    for_each = each.key == "coordinator" ? [1] : []
    content {
      sid       = "FindProducerPublicIp"
      actions   = ["ec2:DescribeNetworkInterfaces", "autoscaling:DescribeAutoScalingGroups"]
      resources = ["*"] # Describe* calls of EC2 and Auto Scaling have no resource-level permissions
    }
  }
  dynamic "statement" {
    for_each = each.key == "coordinator" ? [1] : []
    content {
      sid       = "PrewarmGpuGroup"
      actions   = ["autoscaling:SetDesiredCapacity"]
      resources = ["arn:${local.partition}:autoscaling:${local.region}:${local.account}:autoScalingGroup:*:autoScalingGroupName/${local.gpu_asg_name}"]
    }
  }
  dynamic "statement" {
    for_each = each.key == "coordinator" ? [1] : []
    content {
      sid       = "StartWorkflow"
      actions   = ["states:StartExecution"]
      resources = [local.state_machine_arn]
    }
  }
  dynamic "statement" {
    for_each = each.key == "generate_notes" && var.notes_provider == "bedrock" ? [1] : []
    content {
      # Converse is authorised as InvokeModel; one model, in one region.
      sid       = "WriteNotesWithOneBedrockModel"
      actions   = ["bedrock:InvokeModel"]
      resources = [local.bedrock_model_arn]
    }
  }
  dynamic "statement" {
    for_each = each.key == "finalize" ? [1] : []
    content {
      sid       = "PublishFailedWindows"
      actions   = ["cloudwatch:PutMetricData"]
      resources = ["*"] # PutMetricData has no resource-level permissions; the namespace condition scopes it
      condition {
        test     = "StringEquals"
        variable = "cloudwatch:namespace"
        values   = [local.metrics_namespace]
      }
    }
  }
}

resource "aws_iam_role" "lambda" {
  for_each           = local.functions
  name               = "${each.value}-lambda"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "lambda" {
  for_each = local.functions
  name     = "function"
  role     = aws_iam_role.lambda[each.key].id
  policy   = data.aws_iam_policy_document.lambda_common[each.key].json
}

# --- Step Functions ---------------------------------------------------------------

data "aws_iam_policy_document" "workflow" {
  statement {
    sid     = "InvokeWorkflowSteps"
    actions = ["lambda:InvokeFunction"]
    resources = flatten([
      for k in ["check_windows", "generate_notes", "finalize"] :
      [local.function_arns[k], "${local.function_arns[k]}:*"]
    ])
  }
  statement {
    sid = "DeliverExecutionLogs"
    actions = [
      "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    ]
    resources = ["*"] # CloudWatch Logs vended-delivery APIs have no resource-level permissions
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"] # X-Ray APIs have no resource-level permissions
  }
}

resource "aws_iam_role" "workflow" {
  name               = "${local.state_machine_name}-states"
  assume_role_policy = data.aws_iam_policy_document.assume_states.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "workflow" {
  name   = "workflow"
  role   = aws_iam_role.workflow.id
  policy = data.aws_iam_policy_document.workflow.json
}
