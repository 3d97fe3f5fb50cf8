#!/usr/bin/env bash
# Installs what the interoperability and isolation tests drive: curl, openssl, dig, iproute2
# (ip netns, ss), Chromium's headless shell, HAProxy and nginx (PROXY protocol neighbours);
# and what the deployment tests drive: kubernetes-validate (PyPI), podman with runc (the image
# smoke test), containerd (the image import as K3s does it).
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
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
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
podman --version
# From PyPI, for lnm-operator's tests: kubernetes-validate (offline validation of the rendered
# Kubernetes objects against the bundled OpenAPI schemas) and helm-python-sdk (Helm's own
# template engine, as a library: no registry reachable here ships a `helm` binary).
pip_missing=()
command -v kubernetes-validate >/dev/null 2>&1 || pip_missing+=(kubernetes-validate)
python3 -c 'import helm_python' >/dev/null 2>&1 || pip_missing+=(helm-python-sdk)
if [ ${#pip_missing[@]} -gt 0 ]; then
  echo "installing (PyPI): ${pip_missing[*]}"
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
  fi
  # Debian's own Python refuses system-wide pip installs (PEP 668) unless told otherwise.
  python3 -m pip install --quiet "${pip_missing[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${pip_missing[@]}"
fi
kubernetes-validate --version
python3 -c 'import helm_python; print("helm-python-sdk", helm_python.__version__)'
