#!/usr/bin/env bash
# Live captions and WHIP: aiortc (the `live` extra) and headless Chromium for the browser test.
# Idempotent: every step checks before it acts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

# 1. aiortc for WHIP ingest (pure-Python wheel plus av, which the project already pins).
if ! "$PY" -c "import aiortc, websockets" >/dev/null 2>&1; then
  flock /tmp/flowbot-pip.lock "$VENV/bin/pip" install -q "aiortc==1.16.0" "websockets>=12"
fi

# 2. Debian's Chromium drives the "stream my microphone" page in tests/live/test_whip_browser.py
#    (fake microphone fed from a WAV file, DevTools protocol on loopback).
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y chromium
fi
