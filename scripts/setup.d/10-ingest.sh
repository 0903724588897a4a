#!/usr/bin/env bash
# Ingest: ffmpeg (test publishers, like Zoom/OBS), flite (test speech), nginx + nginx-rtmp
# (the AWS producer's public RTMP front). Idempotent: installs only what is missing.
set -euo pipefail

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v flite >/dev/null 2>&1 || need+=(flite)
{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || need+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)

if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi

# The Debian package enables the module for the system nginx; the producer renders its own
# config with an explicit load_module, so nothing else needs configuring. Do not start the
# system nginx service here: tests and producer tasks run their own instance.
ffmpeg -hide_banner -version | head -n 1
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] && echo "nginx-rtmp module present"
