terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.31, < 6.0"
    }
  }
  # State holds the secret values passed as variables: use an encrypted,
  # access-controlled backend for real deployments, e.g.
  #   terraform init -backend-config=... with a backend "s3" block added here.
}

provider "aws" {
  region = var.aws_region
  default_tags {
    tags = merge({ Project = var.project_name, ManagedBy = "terraform" }, var.tags)
  }
}
