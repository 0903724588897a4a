# Data plane: the audio stream, the archive, session state, secrets, the
# end-of-session workflow and the IAM roles that use them. This module can be
# applied alone (tests apply it against LocalStack + moto), so it owns the
# names of the compute resources its roles are scoped to.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name

  stream_name          = "${var.name}-audio"
  sessions_table       = "${var.name}-sessions"
  state_index          = "by_state"
  archive_bucket       = "${var.name}-archive-${local.account}"
  cluster_name         = var.name
  gpu_asg_name         = "${var.name}-gpu"
  producer_family      = "${var.name}-producer"
  processor_family     = "${var.name}-processor"
  producer_repository  = "${var.name}-producer"
  processor_repository = "${var.name}-processor"
  state_machine_name   = "${var.name}-session-workflow"
  metrics_namespace    = "FlowBot"

  functions = {
    coordinator    = "${var.name}-coordinator"
    check_windows  = "${var.name}-check-windows"
    generate_notes = "${var.name}-generate-notes"
    finalize       = "${var.name}-finalize"
  }
  function_arns = {
    for k, fn in local.functions : k => "arn:${local.partition}:lambda:${local.region}:${local.account}:function:${fn}"
  }

  log_groups = {
    producer  = "/flowbot/${var.name}/producer"
    processor = "/flowbot/${var.name}/processor"
    workflow  = "/aws/vendedlogs/states/${local.state_machine_name}"
  }
  log_group_arn_prefix = "arn:${local.partition}:logs:${local.region}:${local.account}:log-group"

  stream_arn         = "arn:${local.partition}:kinesis:${local.region}:${local.account}:stream/${local.stream_name}"
  sessions_table_arn = "arn:${local.partition}:dynamodb:${local.region}:${local.account}:table/${local.sessions_table}"
  kcl_table_arns = [
    for t in [var.kcl_application_name, "${var.kcl_application_name}-CoordinatorState", "${var.kcl_application_name}-WorkerMetricStats"] :
    "arn:${local.partition}:dynamodb:${local.region}:${local.account}:table/${t}"
  ]
  cluster_arn       = "arn:${local.partition}:ecs:${local.region}:${local.account}:cluster/${local.cluster_name}"
  state_machine_arn = "arn:${local.partition}:states:${local.region}:${local.account}:stateMachine:${local.state_machine_name}"

  bedrock_region    = var.bedrock_region == "" ? local.region : var.bedrock_region
  bedrock_model_arn = "arn:${local.partition}:bedrock:${local.bedrock_region}::foundation-model/${var.bedrock_model_id}"
}
