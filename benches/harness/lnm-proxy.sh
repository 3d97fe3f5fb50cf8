#!/usr/bin/env bash
# Adapter for ../shared/bench (the peer harness): turns its placeholders into an lnm level
# configuration and execs lnm-gateway in the foreground.
#
#   CANDIDATE_NAME=lnm \
#   CANDIDATE_PROXY_CMD="$PWD/benches/harness/lnm-proxy.sh {level} {listen} {parent} {allowlist} {workdir}" \
#   ../shared/bench/run-peers.sh
#
# Both levels forward to {parent} (L3 → L4, L4 → the origin), as the peers do. LNM_BIN overrides
# the binary (default: target/release/lnm-gateway); LNM_WORKERS the thread-per-core workers (default 1,
# like the single-worker peers); LNM_LOG the log level (default info: one line per connection);
# LNM_ZERO_COPY=true relays bulk transfers through splice(2) instead of the copy (lnm's default).
set -euo pipefail
level=$1 listen=$2 parent=$3 allowlist=$4 workdir=$5
here=$(cd "$(dirname "$0")" && pwd)
bin=${LNM_BIN:-$here/../../target/release/lnm-gateway}
mkdir -p "$workdir"
config="$workdir/lnm-l$level.yaml"
{
  echo "level: $level"
  echo "parentIpAddr: ${parent%:*}"
  echo "parentPort: ${parent##*:}"
  echo "logLevel: ${LNM_LOG:-info}"
  # The harness holds up to 9000 connections from one client address; the peers run with
  # raised connection limits too.
  echo "limits: {maxConnections: 20000, maxConnectionsPerSource: 20000}"
  echo "relay: {zeroCopy: ${LNM_ZERO_COPY:-false}}"
  echo "listeners:"
  echo "  - {bind: \"$listen\", protocol: tls}"
  echo "allowList:"
  echo "  domains:"
  grep -v '^[[:space:]]*#' "$allowlist" | grep -v '^[[:space:]]*$' | while read -r name; do
    echo "    - {destinationUrl: \"$name\", destinationType: external}"
  done
} > "$config"
# LNM_WORKERS=default: lnm's own default (one worker per CPU it may run on).
workers=()
if [ "${LNM_WORKERS:-1}" != default ]; then workers=(--workers "${LNM_WORKERS:-1}"); fi
exec "$bin" --config "$config" "${workers[@]}"
