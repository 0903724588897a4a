variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "tags" {
  description = "Tags put on every resource of this module."
  type        = map(string)
  default     = {}
}

variable "kms_key_arn" {
  description = "Key that encrypts the alarm topic."
  type        = string
}

variable "alarm_email" {
  description = "Address that gets alarm notifications (confirm the subscription mail); empty = topic only."
  type        = string
  default     = ""
}

variable "stream_name" {
  description = "Kinesis stream of audio frames."
  type        = string
}

variable "iterator_age_alarm_seconds" {
  description = "Alarm when the processors lag the stream by more than this."
  type        = number
  default     = 120
}

variable "metrics_namespace" {
  description = "Namespace of flowbot's custom metrics (FailedWindows)."
  type        = string
}

variable "function_names" {
  description = "Lambda function names by role."
  type        = map(string)
}

variable "state_machine_arn" {
  description = "End-of-session workflow."
  type        = string
}

variable "cluster_name" {
  description = "ECS cluster."
  type        = string
}

variable "processor_service_name" {
  description = "ECS service of the processors."
  type        = string
}

variable "gpu_asg_name" {
  description = "GPU Auto Scaling group."
  type        = string
}

data "aws_region" "current" {}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_metric_alarm" "iterator_age" {
  alarm_name          = "${var.name}-stream-lag"
  alarm_description   = "Processors are more than ${var.iterator_age_alarm_seconds} s behind the audio: captions are late (scaling, Spot capacity or a stuck worker)."
  namespace           = "AWS/Kinesis"
  metric_name         = "GetRecords.IteratorAgeMilliseconds"
  dimensions          = { StreamName = var.stream_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = var.iterator_age_alarm_seconds * 1000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "failed_windows" {
  alarm_name          = "${var.name}-failed-windows"
  alarm_description   = "Windows that could not be transcribed (sessions end as partial)."
  namespace           = var.metrics_namespace
  metric_name         = "FailedWindows"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each            = var.function_names
  alarm_name          = "${each.value}-errors"
  alarm_description   = "Errors in ${each.value}."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "workflow_failed" {
  for_each            = toset(["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"])
  alarm_name          = "${var.name}-workflow-${lower(trimprefix(each.key, "Executions"))}"
  alarm_description   = "End-of-session workflow executions: ${each.key}."
  namespace           = "AWS/States"
  metric_name         = each.key
  dimensions          = { StateMachineArn = var.state_machine_arn }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_dashboard" "main" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Audio in (bytes/min) and processor lag (ms)"
          region = data.aws_region.current.name
          metrics = [
            ["AWS/Kinesis", "IncomingBytes", "StreamName", var.stream_name, { stat = "Sum", period = 60 }],
            ["AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "StreamName", var.stream_name, { stat = "Maximum", period = 60, yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Processor tasks and GPU instances"
          region = data.aws_region.current.name
          metrics = [
            ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", var.cluster_name, "ServiceName", var.processor_service_name, { stat = "Maximum", period = 60 }],
            ["ECS/ContainerInsights", "DesiredTaskCount", "ClusterName", var.cluster_name, "ServiceName", var.processor_service_name, { stat = "Maximum", period = 60 }],
            ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", var.gpu_asg_name, { stat = "Maximum", period = 60 }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title  = "Failed windows and workflow outcomes"
          region = data.aws_region.current.name
          metrics = [
            [var.metrics_namespace, "FailedWindows", { stat = "Sum", period = 300 }],
            ["AWS/States", "ExecutionsSucceeded", "StateMachineArn", var.state_machine_arn, { stat = "Sum", period = 300 }],
            ["AWS/States", "ExecutionsFailed", "StateMachineArn", var.state_machine_arn, { stat = "Sum", period = 300 }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title   = "Lambda errors"
          region  = data.aws_region.current.name
          metrics = [for fn in values(var.function_names) : ["AWS/Lambda", "Errors", "FunctionName", fn, { stat = "Sum", period = 300 }]]
        }
      },
    ]
  })
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.main.dashboard_name
}
