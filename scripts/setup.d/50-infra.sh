#!/usr/bin/env bash
# Tools for the AWS deployment checks (tests/infra): Terraform and checkov.
# Idempotent: every step checks before it installs, so re-runs are fast.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TF_VERSION="${TF_VERSION:-1.11.4}"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.2.500}"
CHECKOV_VENV="${CHECKOV_VENV:-$ROOT/.cache/checkov-venv}"

# Terraform 1.11 comes with the machine image (its AWS provider lies in a filesystem mirror);
# it is not in the package registries these machines reach.
if ! command -v terraform >/dev/null 2>&1; then
  echo "50-infra: terraform is not installed; the infra checks need Terraform >= 1.5" >&2
  exit 1
fi

# checkov: its own virtual environment, because its pins clash with the project venv.
if ! "$CHECKOV_VENV/bin/checkov" --version >/dev/null 2>&1; then
  PY="${CHECKOV_PYTHON:-python3}"
  "$PY" -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install --quiet --upgrade pip
  "$CHECKOV_VENV/bin/pip" install --quiet "checkov==${CHECKOV_VERSION}"
fi
# LocalStack for the data-plane apply test, in its OWN venv: the shared one of
# 30-localstack.sh also holds plain moto[server], whose `moto` package replaces
# LocalStack's moto-ext and breaks its moto-backed services (Secrets Manager,
# CloudWatch Logs: "cannot import name 'RESTError'"). Python 3.13 only.
INFRA_LS_VENV="${INFRA_LS_VENV:-$ROOT/.cache/infra-localstack-venv}"
if ! "$INFRA_LS_VENV/bin/python" -c "import localstack.runtime.main; from moto.core.exceptions import RESTError; import moto.server" 2>/dev/null; then
  PY313=""
  if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/3.13.0/bin/python3" ]; then
    PY313="$(pyenv root)/versions/3.13.0/bin/python3"
  elif command -v python3.13 >/dev/null 2>&1; then
    PY313="$(command -v python3.13)"
  fi
  if [ -z "$PY313" ]; then
    echo "50-infra: Python 3.13 not found (pyenv 3.13.0 or python3.13); LocalStack needs it" >&2
    exit 1
  fi
  "$PY313" -m venv "$INFRA_LS_VENV"
  "$INFRA_LS_VENV/bin/pip" install --quiet \
    "localstack-core[runtime]==2026.3.0" "cbor2<6" "pyopenssl<26" "cryptography<47" service_identity \
    flask flask-cors  # moto-ext's own server, for DynamoDB
fi

echo "infra tools: $(terraform version | head -1), checkov $("$CHECKOV_VENV/bin/checkov" --version)"
