#!/usr/bin/env bash
# Installs what the interoperability and isolation tests drive: curl, openssl, dig, iproute2
# (ip netns, ss), Chromium's headless shell, HAProxy and nginx (PROXY protocol neighbours).
# Idempotent; needs root (CI is root) only when something is missing.
set -euo pipefail
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v chromium-headless-shell >/dev/null 2>&1 || missing+=(chromium-headless-shell)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests start their own nginx and HAProxy on free ports: stop a packaged instance that
  # an init system may have started.
  nginx -s quit 2>/dev/null || true
fi
curl --version | head -1
openssl version
dig -v 2>&1 | head -1
chromium-headless-shell --version 2>/dev/null | head -1 || true
haproxy -v | head -1
nginx -v 2>&1
