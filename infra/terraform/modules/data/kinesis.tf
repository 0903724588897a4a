resource "aws_kinesis_stream" "audio" {
  name             = local.stream_name
  shard_count      = var.kinesis_stream_mode == "PROVISIONED" ? var.kinesis_shard_count : null
  retention_period = var.kinesis_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.main.arn

  stream_mode_details {
    stream_mode = var.kinesis_stream_mode
  }

  # Iterator age and incoming bytes are what scaling and alarms read; they are
  # stream-level metrics, so no shard-level metrics are bought.
  tags = var.tags
}
