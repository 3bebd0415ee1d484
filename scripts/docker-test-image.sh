#!/usr/bin/env bash
# Build the local Docker image the `docker` environment is tested against, without a registry:
# a minimal Debian bookworm root fs with python3 (the worker needs only the standard library).
# Idempotent: exits at once when the image already exists.
#
# Usage: scripts/docker-test-image.sh [IMAGE]   (default rlm-sandbox:test)
# Env:   RLM_DEBIAN_MIRROR overrides the mirror (default: the first one in apt sources).
set -euo pipefail

IMAGE="${1:-rlm-sandbox:test}"

if ! docker info >/dev/null 2>&1; then
  echo "docker-test-image: the Docker daemon is not reachable (start dockerd first)" >&2
  exit 1
fi
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "docker-test-image: $IMAGE already present"
  exit 0
fi
command -v debootstrap >/dev/null || {
  echo "docker-test-image: debootstrap missing (apt-get install -y debootstrap)" >&2
  exit 1
}

mirror="${RLM_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  # deb822 sources (URIs: ...) first, then one-line sources (deb URL suite ...).
  mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
    | grep -E '/debian/?$' | head -n1 || true)"
fi
if [ -z "$mirror" ]; then
  mirror="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    | awk '{print $2}' | grep -E 'debian/?$' | head -n1 || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d /tmp/rlm-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

start=$(date +%s)
echo "docker-test-image: debootstrap bookworm from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3 bookworm "$rootfs" "$mirror" >/tmp/rlm-debootstrap.log 2>&1 || {
  echo "docker-test-image: debootstrap failed; last lines of /tmp/rlm-debootstrap.log:" >&2
  tail -n 20 /tmp/rlm-debootstrap.log >&2
  exit 1
}
# Drop what a REPL worker never needs to keep the image small.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | docker import -c 'CMD ["python3"]' - "$IMAGE" >/dev/null
echo "docker-test-image: built $IMAGE in $(($(date +%s) - start)) s"
