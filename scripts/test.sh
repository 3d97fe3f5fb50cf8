#!/usr/bin/env bash
# The test command of lnm (README, "Tests"): on a fresh Debian machine with only the Rust
# toolchain it installs what the interoperability and isolation tests drive (curl, openssl, dig,
# iproute2, Chromium's headless shell — when missing, as root), then runs the whole suite:
# every unit, property, integration and doc test of every crate with every feature.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p lnm-dns`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! scripts/install-test-deps.sh; then
  echo "scripts/test.sh: the test tools could not be installed (run as root, or install them" >&2
  echo "yourself: see scripts/install-test-deps.sh); the tests that drive them will say which" >&2
  echo "tool they miss" >&2
fi
exec cargo test --workspace --all-features "$@"
