# Processor task count follows the work on the stream:
#
#   sessions  ~= IncomingBytes per minute / (60 s * 32,000 B/s)   (16 kHz s16 mono)
#   desired    = ceil(sessions / sessions_per_gpu_worker)
#                + 1 if the oldest unread record is older than scale_out_lag_seconds
#                (at least 1 while audio arrives or records wait; 0 otherwise)
#
# Step scaling with ExactCapacity sets that count (re-applied every minute the
# alarm stays in ALARM, so repeated invocations never over-scale). It returns to
# 0 after scale_in_idle_minutes without incoming audio and with a drained stream.
# The ECS capacity provider then sizes the Spot GPU group to the tasks (and to
# zero instances when there are none). The coordinator's pre-warm raises the
# group to one instance at start_session so the first task does not wait for a
# cold instance.

locals {
  bytes_per_session_minute = 60 * 32000
  work_metrics = [
    {
      id     = "inb"
      metric = "IncomingBytes"
      stat   = "Sum"
    },
    {
      id     = "age"
      metric = "GetRecords.IteratorAgeMilliseconds"
      stat   = "Maximum"
    },
  ]
  need_expression    = "CEIL(FILL(inb,0) / ${local.bytes_per_session_minute * var.sessions_per_gpu_worker}) + IF(FILL(age,0) > ${var.scale_out_lag_seconds * 1000}, 1, 0)"
  desired_expression = "IF(FILL(inb,0) > 0 OR FILL(age,0) > 0, IF(need < 1, 1, need), 0)"
}

resource "aws_appautoscaling_target" "processor" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.processor.name}"
  min_capacity       = 0
  max_capacity       = var.gpu_asg_max_size
}

resource "aws_appautoscaling_policy" "processor_set_workers" {
  name               = "${var.name}-processor-set-workers"
  service_namespace  = aws_appautoscaling_target.processor.service_namespace
  scalable_dimension = aws_appautoscaling_target.processor.scalable_dimension
  resource_id        = aws_appautoscaling_target.processor.resource_id
  policy_type        = "StepScaling"

  step_scaling_policy_configuration {
    adjustment_type         = "ExactCapacity"
    cooldown                = 60
    metric_aggregation_type = "Maximum"

    # Alarm threshold is 1 worker: metric - 1 in [i-1, i) -> exactly i workers.
    dynamic "step_adjustment" {
      for_each = range(1, var.gpu_asg_max_size + 1)
      content {
        metric_interval_lower_bound = step_adjustment.value - 1
        metric_interval_upper_bound = step_adjustment.value == var.gpu_asg_max_size ? null : step_adjustment.value
        scaling_adjustment          = step_adjustment.value
      }
    }
  }
}

resource "aws_appautoscaling_policy" "processor_to_zero" {
  name               = "${var.name}-processor-to-zero"
  service_namespace  = aws_appautoscaling_target.processor.service_namespace
  scalable_dimension = aws_appautoscaling_target.processor.scalable_dimension
  resource_id        = aws_appautoscaling_target.processor.resource_id
  policy_type        = "StepScaling"

  step_scaling_policy_configuration {
    adjustment_type         = "ExactCapacity"
    cooldown                = 60
    metric_aggregation_type = "Maximum"
    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = 0
    }
  }
}

# Two alarms over the same metric math: one sets the task count while there is work, the
# other takes the processors to zero once nothing is live and the stream is drained.
locals {
  worker_alarms = {
    work_present = {
      name        = "${var.name}-processor-work-present"
      description = "Audio arriving or waiting on the stream: set processor tasks to the needed count."
      comparison  = "GreaterThanOrEqualToThreshold"
      periods     = 1
      # Missing data means no producer and no consumer: not work.
      missing = "notBreaching"
      action  = aws_appautoscaling_policy.processor_set_workers.arn
    }
    no_work = {
      name        = "${var.name}-processor-idle"
      description = "No live session and a drained stream for ${var.scale_in_idle_minutes} min: processors to zero."
      comparison  = "LessThanThreshold"
      periods     = var.scale_in_idle_minutes
      # No data at all (no producer, no consumer) is the idle state itself.
      missing = "breaching"
      action  = aws_appautoscaling_policy.processor_to_zero.arn
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "workers" {
  for_each = local.worker_alarms

  alarm_name          = each.value.name
  alarm_description   = each.value.description
  comparison_operator = each.value.comparison
  threshold           = 1
  evaluation_periods  = each.value.periods
  datapoints_to_alarm = each.value.periods
  treat_missing_data  = each.value.missing
  alarm_actions       = [each.value.action]

  dynamic "metric_query" {
    for_each = local.work_metrics
    content {
      id = metric_query.value.id
      metric {
        namespace   = "AWS/Kinesis"
        metric_name = metric_query.value.metric
        dimensions  = { StreamName = var.data.stream_name }
        period      = 60
        stat        = metric_query.value.stat
      }
    }
  }

  metric_query {
    id          = "need"
    expression  = local.need_expression
    label       = "Tasks for the live sessions and the backlog"
    return_data = false
  }

  metric_query {
    id          = "workers"
    expression  = local.desired_expression
    label       = "Processor tasks needed"
    return_data = true
  }

  tags = var.tags
}
