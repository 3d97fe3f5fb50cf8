#!/usr/bin/env bash
# Soak test of one lnm level (benches/README.md, "Soak"): builds the release binaries, runs
# `lnm-soak` against the release `lnm-gateway` for DURATION under mixed load (TLS, HTTP, DNS,
# slow and garbage clients, a reload every 10 s) and writes benches/results/soak-<UTC>.md with
# the samples as soak-<UTC>.csv. Not a timed test: it only reports and judges (exit 0 when every
# verdict held, 1 when one did not, 2 when it could not start).
#
#   benches/soak.sh                              # 10 minutes at the default rates
#   DURATION=30m RATE_SCALE=0.5 benches/soak.sh  # longer, half the rates
#   NOTE="shared with two builders" benches/soak.sh --gateway-workers 1   # extra args go to lnm-soak
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10m}
RATE_SCALE=${RATE_SCALE:-1}
SAMPLE_INTERVAL=${SAMPLE_INTERVAL:-2s}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

# Two builds, so that the gateway is the production binary (the driver's `sim` feature of
# lnm-proxy does not reach it).
cargo build --release -p lnm-examples --bin lnm-gateway
cargo build --release -p lnm-benches --bin lnm-soak

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=benches/results/soak-$stamp
workdir=${TMPDIR:-/tmp}/lnm-soak-$stamp
note=${NOTE:-"Machine: $(nproc) CPUs, load average before the run $(cut -d' ' -f1-3 /proc/loadavg) (other work shares the CPUs)."}
status=0
"$TARGET/release/lnm-soak" \
  --gateway "$TARGET/release/lnm-gateway" \
  --duration "$DURATION" \
  --rate-scale "$RATE_SCALE" \
  --sample-interval "$SAMPLE_INTERVAL" \
  --workdir "$workdir" \
  --out "$out.md" --csv "$out.csv" \
  --title "lnm soak $stamp ($DURATION)" \
  --note "$note" \
  "$@" || status=$?
echo "soak.sh: report $out.md, samples $out.csv, gateway log and config in $workdir (exit $status)" >&2
exit "$status"
