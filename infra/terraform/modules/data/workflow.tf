locals {
  workflow_template_vars = {
    partition          = local.partition
    check_windows_arn  = local.function_arns.check_windows
    generate_notes_arn = local.function_arns.generate_notes
    finalize_arn       = local.function_arns.finalize
    first_poll         = var.workflow_first_poll_seconds
    max_poll           = var.workflow_max_poll_seconds
    half_max_poll      = floor(var.workflow_max_poll_seconds / 2)
    default_max_wait   = var.workflow_max_wait_seconds
  }
  # jsondecode/jsonencode: a template typo fails at plan time, not at the first session end.
  workflow_definition      = jsonencode(jsondecode(templatefile("${path.module}/templates/workflow.asl.json.tftpl", merge(local.workflow_template_vars, { mock = var.workflow_mock_tasks }))))
  workflow_mock_definition = jsonencode(jsondecode(templatefile("${path.module}/templates/workflow.asl.json.tftpl", merge(local.workflow_template_vars, { mock = true }))))
}

resource "aws_cloudwatch_log_group" "workflow" {
  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable; execution history is operational, not an audit record.
  name              = local.log_groups.workflow
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
  tags              = var.tags
}

resource "aws_sfn_state_machine" "workflow" {
  name       = local.state_machine_name
  role_arn   = aws_iam_role.workflow.arn
  definition = local.workflow_definition

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.workflow.arn}:*"
    include_execution_data = true
    level                  = "ALL"
  }

  tracing_configuration {
    enabled = true
  }

  tags = var.tags
}
