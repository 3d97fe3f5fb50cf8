#!/usr/bin/env bash
# Adapter for ../shared/bench (the peer harness): runs lnm-gateway as a DNS rewrite server only.
#
#   CANDIDATE_NAME=lnm \
#   CANDIDATE_DNS_CMD="$PWD/benches/harness/lnm-dns.sh {listen} {answer_ip} {upstream} {allowlist} {workdir}" \
#   ../shared/bench/run-peers.sh
#
# LNM_BIN overrides the binary; LNM_WORKERS the thread-per-core workers (default 1, like dnsmasq);
# LNM_LOG the log level (default info; DNS queries are logged at debug).
set -euo pipefail
listen=$1 answer=$2 upstream=$3 allowlist=$4 workdir=$5
here=$(cd "$(dirname "$0")" && pwd)
bin=${LNM_BIN:-$here/../../target/release/lnm-gateway}
mkdir -p "$workdir"
config="$workdir/lnm-dns.yaml"
{
  echo "logLevel: ${LNM_LOG:-info}"
  echo "listeners: []"
  echo "dns: {bind: \"$listen\", answerIpv4: [$answer], upstream: [\"$upstream\"], ttl: 60}"
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
