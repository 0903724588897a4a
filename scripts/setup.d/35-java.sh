#!/usr/bin/env bash
# Java 17 for the KCL MultiLangDaemon (`flowbot process --source kinesis`; the jars come with
# the `aws` extra). Idempotent: installs only when java is missing.
set -euo pipefail
if ! command -v java >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends openjdk-17-jre-headless
fi
java -version 2>&1 | head -n 1
