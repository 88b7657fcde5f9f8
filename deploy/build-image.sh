#!/usr/bin/env bash
# Build deploy/Containerfile with buildah on a machine that cannot reach Docker Hub.
#
#   deploy/build-image.sh [--tag NAME] [--ca FILE] [--mirror URL] [--rebuild-base]
#
# Docker, podman and Kubernetes users build the Containerfile the usual way (its header
# says how). Here there is no registry to pull debian:bookworm-slim from, so:
#   1. the base: `buildah from scratch`, `buildah mount`, `debootstrap --variant=minbase
#      bookworm` into the mount (Debian's own packages, what debian:bookworm-slim is made
#      of), apt's sources added with `buildah copy`, cleaned with `buildah run --isolation
#      chroot`, `buildah commit` as localhost/cnn-zoo-base:bookworm (kept and reused);
#   2. the image: `buildah build --from` that base, the Containerfile's own steps, each RUN
#      with --isolation chroot (the only isolation buildah has here) on the host network;
#      the CA bundle pip needs to reach the package index is a build secret, mounted for
#      the pip step alone and in no layer of the image.
# Run as root (debootstrap and buildah's storage need it). Prints the image's size and the
# time each step took.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TAG="localhost/cnn-zoo-serve:latest"
BASE="localhost/cnn-zoo-base:bookworm"
CA="/etc/ssl/certs/ca-certificates.crt"
MIRROR="http://deb.debian.org/debian"
REBUILD_BASE=0

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG="${2:?--tag needs a name}"; shift 2 ;;
    --ca) CA="${2:?--ca needs a file}"; shift 2 ;;
    --mirror) MIRROR="${2:?--mirror needs a URL}"; shift 2 ;;
    --rebuild-base) REBUILD_BASE=1; shift ;;
    -h|--help) usage ;;
    *) echo "error: unknown option $1" >&2; usage ;;
  esac
done

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (Debian: apt-get install buildah debootstrap)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "error: run as root: debootstrap and buildah's storage need it" >&2; exit 1; }
[ -r "$CA" ] || { echo "error: CA bundle $CA is not readable (--ca FILE names another)" >&2; exit 1; }

step_start=$SECONDS
step() { echo "== $1 ($((SECONDS - step_start)) s since start)"; }

build_base() {
  local ctr mnt sources
  ctr=$(buildah from scratch)
  trap 'buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true' RETURN
  mnt=$(buildah mount "$ctr")
  debootstrap --variant=minbase bookworm "$mnt" "$MIRROR"
  # As in debian:bookworm-slim: the release, its updates and its security archive.
  sources=$(mktemp)
  cat > "$sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -f "$mnt/etc/apt/sources.list"
  buildah copy --chmod 0644 "$ctr" "$sources" /etc/apt/sources.list.d/debian.sources >/dev/null
  rm -f "$sources"
  buildah run --isolation chroot "$ctr" -- sh -c \
    'apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log /var/log/bootstrap.log'
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --label org.opencontainers.image.description="debootstrap --variant=minbase bookworm" "$ctr"
  buildah commit --quiet --format docker --rm "$ctr" "$BASE" >/dev/null
  trap - RETURN
}

if [ "$REBUILD_BASE" = 1 ] || ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  step "base image $BASE: debootstrap --variant=minbase bookworm from $MIRROR"
  build_base
else
  step "base image $BASE: already built (--rebuild-base makes it again)"
fi

step "image $TAG: buildah build --from $BASE -f deploy/Containerfile"
# --format docker: the OCI format has no HEALTHCHECK. No --layers: buildah caches no
# intermediate layers, so every build starts clean from the base.
buildah build --isolation chroot --network host --format docker --from "$BASE" \
  --secret id=pip_ca,src="$CA" -f "$ROOT/deploy/Containerfile" -t "$TAG" "$ROOT"

step "done"
buildah images --format '{{.Name}}:{{.Tag}} {{.ID}} {{.Size}}' "$TAG"
echo "built $TAG in $((SECONDS - step_start)) s"
