#!/usr/bin/env bash
# The proxy's own CPU, without TLS endpoints: lnm, nginx (stream + ssl_preread) and HAProxy
# (TCP mode, req.ssl_sni) each forward Chromium's real ClientHello to a cheap Python origin on
# loopback, pinned to CPU 1 with the endpoints on CPU 0. Two measurements, interleaved ROUNDS
# times:
#   bulk  — one 1 GiB download: proxy CPU s per GiB (utime+stime of the proxy process)
#   conns — N short connections (100 B answer), 16 at a time: proxy CPU µs per connection
# The peer harness (../shared/bench) measures the same with curl/wrk and a TLS origin, whose
# crypto dominates the machine; this script isolates what the proxies themselves cost.
#
#   cargo build --release -p lnm-examples && benches/harness/proxy-cost.sh
#
# Needs nginx (with the stream module), haproxy and python3 (../shared/bench/install-deps.sh
# installs them). Ports 18443/18444 on 127.0.1.1 and 127.0.4.{1,2,9}. Knobs: ROUNDS (3), N
# (20000), LNM_BIN, LNM_LOG (info), IMPLS ("lnm nginx haproxy").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${LNM_BIN:-$root/target/release/lnm-gateway}
hello=$root/lnm-proxy/testdata/chromium-156.bin
rounds=${ROUNDS:-3} n=${N:-20000} impls=${IMPLS:-lnm nginx haproxy}
work=$(mktemp -d /tmp/lnm-proxy-cost.XXXXXX)
big=$work/1g.bin
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
head -c $((1 << 30)) /dev/urandom > "$big"

cat > "$work/lnm.yaml" <<YAML
level: 4
parentIpAddr: 127.0.1.1
parentPort: 18444
logLevel: ${LNM_LOG:-info}
limits: {maxConnections: 20000, maxConnectionsPerSource: 20000}
listeners:
  - {bind: "127.0.4.9:18443", protocol: tls}
allowList:
  domains:
    - {destinationUrl: "management.azure.com", destinationType: external}
YAML
cat > "$work/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
master_process on;
pid $work/nginx.pid;
error_log $work/nginx-error.log notice;
events { worker_connections 19900; multi_accept on; }
stream {
  map \$ssl_preread_server_name \$up { hostnames; default ""; management.azure.com 127.0.1.1:18444; }
  server { listen 127.0.4.1:18443 backlog=4096; ssl_preread on; proxy_pass \$up; }
}
NGINX
cat > "$work/haproxy.cfg" <<HAPROXY
global
  nbthread 1
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend tls
  bind 127.0.4.2:18443
  tcp-request inspect-delay 10s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend origin if { req.ssl_sni -i management.azure.com }
  default_backend deny
backend origin
  server o 127.0.1.1:18444
backend deny
  tcp-request content reject
HAPROXY

# Starts IMPL pinned to CPU 1; prints "PID ADDRESS" of the process whose CPU is counted.
start() {
  case $1 in
    lnm) taskset -c 1 "$bin" --config "$work/lnm.yaml" --workers "${LNM_WORKERS:-1}" > "$work/lnm.log" 2>&1 &
         pids+=($!); sleep 0.5; echo "$! 127.0.4.9" ;;
    nginx) taskset -c 1 nginx -c "$work/nginx.conf" > /dev/null 2>&1 &
         local master=$!; pids+=($master); sleep 0.5; echo "$(pgrep -P "$master" | head -1) 127.0.4.1" ;;
    haproxy) taskset -c 1 haproxy -f "$work/haproxy.cfg" > /dev/null 2>&1 &
         pids+=($!); sleep 0.5; echo "$! 127.0.4.2" ;;
  esac
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

declare -A bulk conns
for mode in bulk conns; do
  if [ "$mode" = bulk ]; then
    taskset -c 0 python3 "$here/cost_origin.py" bulk 127.0.1.1 18444 "$big" & origin=$!
  else
    taskset -c 0 python3 "$here/cost_origin.py" small 127.0.1.1 18444 & origin=$!
  fi
  pids+=($origin); sleep 0.5
  for round in $(seq 1 "$rounds"); do
    for impl in $impls; do
      read -r pid addr < <(start "$impl")
      t0=$(ticks "$pid")
      if [ "$mode" = bulk ]; then
        out=$(taskset -c 0 python3 "$here/cost_client.py" bulk "$addr" 18443 "$hello")
        t1=$(ticks "$pid")
        value=$(echo "scale=3; ($t1 - $t0) / $hz" | bc)
        bulk[$impl]="${bulk[$impl]:-} $value"
        echo "round $round $impl bulk: $out, proxy CPU $value s/GiB"
      else
        out=$(taskset -c 0 python3 "$here/cost_client.py" conns "$addr" 18443 "$hello" "$n" 16)
        t1=$(ticks "$pid")
        value=$(echo "scale=1; ($t1 - $t0) * 1000000 / $hz / $n" | bc)
        conns[$impl]="${conns[$impl]:-} $value"
        echo "round $round $impl conns: $out, proxy CPU $value µs/connection"
      fi
      kill "$pid" 2>/dev/null || true
      [ "$impl" = nginx ] && kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true
      sleep 0.3
    done
  done
  kill "$origin"; sleep 0.2
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo
echo "| proxy | CPU s per GiB (median of $rounds) | CPU µs per connection (median of $rounds) |"
echo "|---|---|---|"
for impl in $impls; do
  echo "| $impl | $(echo "${bulk[$impl]}" | median) | $(echo "${conns[$impl]}" | median) |"
done
