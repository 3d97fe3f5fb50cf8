#!/usr/bin/env bash
# Builds lnm's container image offline from a release binary: no registry, no container engine,
# no network. The image holds the binary, the shared libraries it links (from this machine,
# which built it), /etc/passwd with the non-root user 65532 and nothing else (no shell). It is
# written as an OCI image layout in a tar archive (plus a Docker-style manifest.json), which
# `podman load -i`, `docker load -i` and `k3s ctr images import` accept.
#
#   cargo build --release -p lnm-examples --bin lnm-gateway
#   scripts/build-image.sh                                  # → target/image/lnm-gateway.oci.tar
#   cargo build --release -p lnm-operator
#   scripts/build-image.sh --name lnm-operator              # the operator's image
#
# Options: --name lnm-gateway|lnm-operator, --binary PATH (default target/release/NAME),
# --ref IMAGE (default ghcr.io/lnm-rs/NAME:VERSION), --output FILE, --max-size-mb N (fails when
# the uncompressed image is larger; default 30, 0: no limit). Prints the archive path and sizes.
# Needs bash, GNU tar, gzip, sha256sum, ldd (Debian: tar gzip coreutils libc-bin).
set -euo pipefail
cd "$(dirname "$0")/.."

name=lnm-gateway
binary=""
ref=""
output=""
max_mb=30
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --ref) ref="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    --max-size-mb) max_mb="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
target_dir=${CARGO_TARGET_DIR:-target}
binary=${binary:-$target_dir/release/$name}
ref=${ref:-ghcr.io/lnm-rs/$name:$version}
output=${output:-$target_dir/image/$name.oci.tar}
[ -x "$binary" ] || { echo "build-image.sh: no binary at $binary (cargo build --release first)" >&2; exit 2; }
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
case "$name" in
  lnm-gateway)
    cmd='["--config","/etc/lnm/config.yaml"]'
    ports='{"8443/tcp":{},"8080/tcp":{},"1053/udp":{},"1053/tcp":{},"9100/tcp":{}}'
    title="lnm gateway"
    description="One Purdue level of lnm: DNS rewrite resolver and SNI/Host-sniffing forward proxy" ;;
  lnm-operator)
    cmd='["run"]'
    ports='{}'
    title="lnm operator"
    description="Reconciles Azure IoT LNM Lnm resources into lnm gateways" ;;
  *) cmd='[]'; ports='{}'; title="$name"; description="$name" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/lnm" "$root/tmp" "$root/home/nonroot"
install -m 0755 "$binary" "$root/usr/local/bin/$name"
# The shared libraries the binary links, and the dynamic loader, at their paths on this machine.
for lib in $(ldd "$binary" | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"
chmod 0755 "$root/etc/lnm"

# One layer, reproducible: sorted, time 0, owned by root (the process never writes to it:
# the root filesystem is read-only in the pod).
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
  -cf "$work/layer.tar" -C "$root" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -6 -c "$work/layer.tar" > "$work/layer.tar.gz"
layer_digest=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar.gz")
uncompressed=$(stat -c %s "$work/layer.tar")

layout="$work/layout"
mkdir -p "$layout/blobs/sha256"
mv "$work/layer.tar.gz" "$layout/blobs/sha256/$layer_digest"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
labels=$(printf '{"org.opencontainers.image.title":"%s","org.opencontainers.image.description":"%s","org.opencontainers.image.version":"%s","org.opencontainers.image.revision":"%s","org.opencontainers.image.source":"https://github.com/lnm-rs/lnm","org.opencontainers.image.licenses":"MIT OR Apache-2.0"}' \
  "$title" "$description" "$version" "$revision")
printf '{"created":"1970-01-01T00:00:00Z","architecture":"%s","os":"linux","config":{"User":"65532:65532","Env":["PATH=/usr/local/bin"],"Entrypoint":["/usr/local/bin/%s"],"Cmd":%s,"WorkingDir":"/","ExposedPorts":%s,"StopSignal":"SIGTERM","Labels":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/build-image.sh"}]}' \
  "$arch" "$name" "$cmd" "$ports" "$labels" "$diff_id" > "$work/config.json"
config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
config_size=$(stat -c %s "$work/config.json")
mv "$work/config.json" "$layout/blobs/sha256/$config_digest"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}],"annotations":%s}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" "$labels" > "$work/manifest.json"
manifest_digest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
manifest_size=$(stat -c %s "$work/manifest.json")
mv "$work/manifest.json" "$layout/blobs/sha256/$manifest_digest"
printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s","io.containerd.image.name":"%s"}}]}' \
  "$manifest_digest" "$manifest_size" "$ref" "$ref" > "$layout/index.json"
# docker load reads manifest.json (and names the image from RepoTags).
printf '[{"Config":"blobs/sha256/%s","RepoTags":["%s"],"Layers":["blobs/sha256/%s"]}]' \
  "$config_digest" "$ref" "$layer_digest" > "$layout/manifest.json"

mkdir -p "$(dirname "$output")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
  -cf "$output" -C "$layout" .
archive=$(stat -c %s "$output")
echo "image: $ref"
echo "archive: $output ($archive bytes)"
echo "uncompressed: $uncompressed bytes; compressed layer: $layer_size bytes; binary: $(stat -c %s "$binary") bytes"
if [ "$max_mb" -gt 0 ] && [ "$uncompressed" -gt $((max_mb * 1000 * 1000)) ]; then
  echo "build-image.sh: the image is $uncompressed bytes, above the limit of $max_mb MB" >&2
  exit 1
fi
