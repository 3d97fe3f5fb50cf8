#!/usr/bin/env bash
# A peer script for run-peers.sh (LNM_EXTRA_PEERS=benches/harness/variants): lnm with
# `relay.zeroCopy: true` (bulk transfers through splice(2)), one worker like `lnm`.
# Proxy arguments: {level} {listen} {parent} {allowlist} {workdir};
# DNS arguments: {listen_ip} {port} {answer_ip} {upstream} {allowlist} {workdir}.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export LNM_ZERO_COPY=true
if [ $# -eq 5 ]; then exec "$here/lnm-proxy.sh" "$@"; fi
exec "$here/lnm-dns.sh" "$1:$2" "$3" "$4" "$5" "$6"
