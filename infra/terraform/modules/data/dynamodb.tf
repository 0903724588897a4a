# Session state (stores/dynamodb.py, the coordinator's SessionStore). Items are
# keyed by "pk": "session#<id>" for a session and "streamkey#<key>" for the
# stream-key pointer written in the same transaction with attribute_not_exists,
# which makes a stream key unique (a GSI on stream_key could not enforce that);
# the "by_state" index lists sessions by state. KCL creates and owns its own
# three tables (<app>, <app>-CoordinatorState, <app>-WorkerMetricStats); the
# processor role below may only touch those.
resource "aws_dynamodb_table" "sessions" {
  name                        = local.sessions_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "state"
    type = "S"
  }

  attribute {
    name = "created_at"
    type = "N"
  }

  global_secondary_index {
    name            = local.state_index
    hash_key        = "state"
    range_key       = "created_at"
    projection_type = "ALL"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }

  tags = var.tags
}
