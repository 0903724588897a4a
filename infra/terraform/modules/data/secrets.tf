# Values come from terraform variables (so they are also in the state: keep the
# state in an encrypted, access-controlled backend) or are put later with
# `aws secretsmanager put-secret-value`; tasks read them at start.
locals {
  secrets = {
    supabase_service_key = { env = "FLOWBOT_SUPABASE_SERVICE_KEY", description = "Supabase service-role key" }
    supabase_jwt_secret  = { env = "FLOWBOT_SUPABASE_JWT_SECRET", description = "Secret that signs Supabase user JWTs" }
    huggingface_token    = { env = "FLOWBOT_HF_TOKEN", description = "Hugging Face token for the pyannote pipeline" }
  }
  secret_values = {
    supabase_service_key = var.supabase_service_key
    supabase_jwt_secret  = var.supabase_jwt_secret
    huggingface_token    = var.huggingface_token
  }
  # Which secrets hold a value; the set of names is not secret, only the values are.
  secrets_with_value = toset([for k, v in local.secret_values : k if nonsensitive(v != "")])
}

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:These are issued by Supabase and Hugging Face; rotation happens there, then put-secret-value here (docs/aws.md).
  for_each                = local.secrets
  name                    = "${var.name}/${replace(each.key, "_", "-")}"
  description             = each.value.description
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "this" {
  for_each      = local.secrets_with_value
  secret_id     = aws_secretsmanager_secret.this[each.key].id
  secret_string = local.secret_values[each.key]
}
