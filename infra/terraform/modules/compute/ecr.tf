resource "aws_ecr_repository" "this" {
  for_each = {
    producer  = var.data.names.producer_repository
    processor = var.data.names.processor_repository
  }
  name                 = each.value
  image_tag_mutability = "IMMUTABLE" # deploys use the git commit as tag
  force_delete         = false

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.data.kms_key_arn
  }

  image_scanning_configuration {
    scan_on_push = true
  }

  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each   = aws_ecr_repository.this
  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last 10 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 10 }
      action       = { type = "expire" }
    }]
  })
}
