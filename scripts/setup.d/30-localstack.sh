#!/usr/bin/env bash
# AWS emulation for the Kinesis/KCL tests: Java 17 (KCL MultiLangDaemon), LocalStack in its
# own Python 3.13 venv (it runs only on 3.13) with moto[server] for DynamoDB, and the
# kinesis-mock npm package LocalStack would otherwise install on first use.
# Idempotent: every step checks before it acts. Runs after `pip install -e .[all]`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
LS_HOME="${FLOWBOT_LOCALSTACK_HOME:-/opt/flowbot-localstack}"
KINESIS_MOCK_VERSION=0.5.2   # the version localstack-core 2026.3.0 asks for

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y "${need_apt[@]}"
fi

# KCL jars ship in the kclpy-ext wheel (the project's `aws` extra).
if ! "$VENV/bin/python" -c "import amazon_kclpy" 2>/dev/null; then
  "$VENV/bin/pip" install "kclpy-ext==3.1.3.post4"
fi

PY313=""
if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/3.13.0/bin/python3" ]; then
  PY313="$(pyenv root)/versions/3.13.0/bin/python3"
elif command -v python3.13 >/dev/null 2>&1; then
  PY313="$(command -v python3.13)"
fi
if [ -z "$PY313" ]; then
  echo "30-localstack: Python 3.13 not found (pyenv 3.13.0 or python3.13); LocalStack needs it" >&2
  exit 1
fi

if ! "$LS_HOME/venv/bin/python" -c "import localstack.runtime.main, moto.server" 2>/dev/null; then
  mkdir -p "$LS_HOME"
  "$PY313" -m venv "$LS_HOME/venv"
  "$LS_HOME/venv/bin/pip" install -q \
    "localstack-core[runtime]==2026.3.0" "cbor2<6" "pyopenssl<26" "cryptography<47" \
    service_identity "moto[server]==5.2.5"
fi

KM="$LS_HOME/libs/kinesis-local/$KINESIS_MOCK_VERSION"
if [ ! -f "$KM/node_modules/kinesis-local/main.js" ]; then
  mkdir -p "$KM"
  npm install --prefix "$KM" "kinesis-local@$KINESIS_MOCK_VERSION"
fi
echo "30-localstack: ready ($LS_HOME)"
