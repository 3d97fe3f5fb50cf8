#!/usr/bin/env bash
# Installs what the interoperability and isolation tests drive: curl, openssl, dig, iproute2
# (ip netns, ss), Chromium's headless shell.
# Idempotent; needs root (CI is root) only when something is missing.
set -euo pipefail
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v chromium-headless-shell >/dev/null 2>&1 || missing+=(chromium-headless-shell)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
curl --version | head -1
openssl version
dig -v 2>&1 | head -1
chromium-headless-shell --version 2>/dev/null | head -1 || true
