# The coordinator (function URL) and the three workflow steps: one zip, four
# handlers in control/lambda_handlers.py.

locals {
  lambda_handlers = {
    coordinator    = { handler = "function_url_handler", timeout = 90, memory = 512 }
    check_windows  = { handler = "check_windows_handler", timeout = 60, memory = 512 }
    generate_notes = { handler = "generate_notes_handler", timeout = 300, memory = 1024 }
    finalize       = { handler = "finalize_handler", timeout = 60, memory = 512 }
  }
}

# The bundle is over Lambda's 50 MB direct-upload limit, so it goes through the
# archive bucket (prefix deploy/, expired by the bucket's lifecycle rule).
resource "aws_s3_object" "lambda_zip" {
  bucket      = var.data.archive_bucket
  key         = "deploy/lambda-${filesha256(var.lambda_zip_path)}.zip"
  source      = var.lambda_zip_path
  source_hash = filemd5(var.lambda_zip_path)
  kms_key_id  = var.data.kms_key_arn
  tags        = var.tags
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_117:The functions reach only AWS APIs and Supabase over TLS; nothing they call lives in the VPC, so VPC attachment would only add NAT cost and cold-start ENIs.
  #checkov:skip=CKV_AWS_116:Invoked synchronously only (function URL, Step Functions); failures go back to the caller, which retries; a DLQ applies to asynchronous invocations.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile; the zip is built and uploaded by the same pipeline that runs terraform (scripts/deploy).
  for_each      = local.lambda_handlers
  function_name = local.names.functions[each.key]
  role          = var.data.role_arns.lambda[each.key]
  runtime       = "python3.11"
  architectures = ["arm64"]
  handler       = "control.lambda_handlers.${each.value.handler}"
  s3_bucket     = aws_s3_object.lambda_zip.bucket
  s3_key        = aws_s3_object.lambda_zip.key
  # filebase64sha256 makes a new zip a new deployment.
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  timeout          = each.value.timeout
  memory_size      = each.value.memory
  kms_key_arn      = var.data.kms_key_arn

  reserved_concurrent_executions = each.key == "coordinator" ? var.coordinator_reserved_concurrency : 20

  tracing_config {
    mode = "Active"
  }

  environment {
    variables = local.lambda_env
  }

  tags       = var.tags
  depends_on = [aws_cloudwatch_log_group.lambda]
}

# Auth: NONE at the URL, because callers are browsers and apps holding a
# Supabase session, not AWS principals. The handler authenticates EVERY call:
# control/auth.py verifies the Supabase JWT (HS256, FLOWBOT_SUPABASE_JWT_SECRET)
# and the coordinator checks the caller owns the meeting; reserved concurrency bounds abuse.
resource "aws_lambda_function_url" "coordinator" {
  #checkov:skip=CKV_AWS_258:The handler verifies a Supabase JWT on every request (docs/aws.md, "Coordinator auth"); AWS_IAM would force SigV4 on browser clients.
  function_name      = aws_lambda_function.this["coordinator"].function_name
  authorization_type = "NONE"

  cors {
    allow_origins  = var.cors_allowed_origins
    allow_methods  = ["POST"]
    allow_headers  = ["authorization", "content-type"]
    expose_headers = []
    max_age        = 300
  }
}

resource "aws_lambda_permission" "coordinator_url" {
  #checkov:skip=CKV_AWS_301:Public by design and limited to the function URL (FunctionUrlAuthType NONE); every request must carry a valid Supabase JWT, which the handler verifies.
  statement_id           = "FunctionURLAllowPublicAccess"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this["coordinator"].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

# Function URLs created since October 2025 also need lambda:InvokeFunction,
# limited to calls through the URL (InvokedViaFunctionUrl). Provider 5.x has no
# argument for that condition, so the AWS CLI adds it (idempotently).
resource "terraform_data" "coordinator_url_invoke" {
  count            = var.manage_function_url_invoke_permission ? 1 : 0
  triggers_replace = [aws_lambda_function.this["coordinator"].arn, aws_lambda_function_url.coordinator.url_id]

  provisioner "local-exec" {
    interpreter = ["bash", "-c"]
    command     = <<-EOT
      set -euo pipefail
      if aws lambda get-policy --region '${local.region}' --function-name '${aws_lambda_function.this["coordinator"].function_name}' \
           --query Policy --output text 2>/dev/null | grep -q '"Sid":"FunctionURLInvokeViaUrl"'; then
        exit 0
      fi
      aws lambda add-permission --region '${local.region}' \
        --function-name '${aws_lambda_function.this["coordinator"].function_name}' \
        --statement-id FunctionURLInvokeViaUrl --action lambda:InvokeFunction \
        --principal '*' --invoked-via-function-url >/dev/null
    EOT
  }
}
