#!/usr/bin/env bash
# The peer harness (../shared/bench/run-peers.sh) with lnm plugged in twice: `lnm` (one worker,
# like the single-worker peers, pinned with them) and `lnm2w` (two thread-per-core workers).
#
#   benches/harness/run-peers.sh            # after `cargo build --release -p lnm-examples`
#
# The harness knows one candidate; the second is added as a peer script in a copy of the
# harness's layout made of symlinks (the harness itself is used unchanged). `lnm2w` proxies are
# pinned to the proxies' CPU like every peer (so its CPU per connection shows what a second
# worker costs on the same core); its DNS server is given both CPUs (LNM2W_DNS_CPUS, default
# 0-1) to measure what one machine answers when a DNS server can use every core — dnsmasq
# cannot use a second one. Every harness knob (TESTS, PROXIES, REPS, ...) passes through;
# LNM_EXTRA_PEERS names a directory of more peer scripts (variants under study).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
shared=${BENCH_DIR_SHARED:-$(cd "$repo/../shared/bench" && pwd)}
farm=${LNM_BENCH_FARM:-/tmp/lnm-bench-harness}
rm -rf "$farm"
mkdir -p "$farm/peers"
for entry in "$shared"/*; do
  [ "$(basename "$entry")" = peers ] || ln -s "$entry" "$farm/$(basename "$entry")"
done
for peer in "$shared"/peers/*; do ln -s "$peer" "$farm/peers/$(basename "$peer")"; done
cat > "$farm/peers/lnm2w.sh" <<PEER
#!/usr/bin/env bash
# lnm with two workers. Proxy: {level} {listen} {parent} {allowlist} {workdir};
# DNS: {listen_ip} {port} {answer_ip} {upstream} {allowlist} {workdir}.
set -euo pipefail
export LNM_WORKERS=2
if [ \$# -eq 5 ]; then exec "$here/lnm-proxy.sh" "\$@"; fi
exec taskset -c "\${LNM2W_DNS_CPUS:-0-1}" "$here/lnm-dns.sh" "\$1:\$2" "\$3" "\$4" "\$5" "\$6"
PEER
chmod +x "$farm/peers/lnm2w.sh"
# Experiments: every executable NAME.sh in LNM_EXTRA_PEERS becomes one more implementation.
if [ -n "${LNM_EXTRA_PEERS:-}" ]; then
  for extra in "$LNM_EXTRA_PEERS"/*.sh; do ln -s "$extra" "$farm/peers/$(basename "$extra")"; done
fi
export CANDIDATE_NAME=lnm
export CANDIDATE_PROXY_CMD="$here/lnm-proxy.sh {level} {listen} {parent} {allowlist} {workdir}"
export CANDIDATE_DNS_CMD="$here/lnm-dns.sh {listen} {answer_ip} {upstream} {allowlist} {workdir}"
export PROXIES=${PROXIES:-nginx haproxy sniproxy lnm lnm2w}
export DNS_IMPLS=${DNS_IMPLS:-dnsmasq lnm lnm2w}
export RESULTS_DIR=${RESULTS_DIR:-$repo/benches/results}
exec "$farm/run-peers.sh" "$@"
