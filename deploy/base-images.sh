#!/usr/bin/env bash
# Builds local stand-ins for the two public images deploy/Dockerfile starts
# from — debian:bookworm-slim and golang:1.26-bookworm — for a Docker engine
# that holds no images and cannot pull any. Debian comes from Debian's
# packages (debootstrap); Go is this machine's own toolchain (`go env GOROOT`).
# Images that already exist are left alone. Needs root, debootstrap and go.
set -euo pipefail

RUNTIME_TAG=debian:bookworm-slim
GO_TAG=golang:1.26-bookworm

have() { docker image inspect "$1" >/dev/null 2>&1; }

# CAs this machine trusts beyond Debian's (a TLS-intercepting proxy's, say)
# go into the stand-ins too, or `go mod download` inside a build cannot verify
# the module proxy.
local_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${local_cas[0]}" ] || local_cas=()

work=$(mktemp -d /var/tmp/streamgrid-base.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! have "$RUNTIME_TAG"; then
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
  echo "base-images: debootstrap bookworm (a few minutes)"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
  if [ ${#local_cas[@]} -gt 0 ]; then
    cp "${local_cas[@]}" "$work/rootfs/usr/local/share/ca-certificates/"
    chroot "$work/rootfs" update-ca-certificates >/dev/null
  fi
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$RUNTIME_TAG" >/dev/null
  rm -rf "$work/rootfs"
  echo "base-images: built $RUNTIME_TAG"
fi

if ! have "$GO_TAG"; then
  goroot=$(go env GOROOT)
  mkdir -p "$work/go-ctx/ca"
  cp -a "$goroot" "$work/go-ctx/go"
  [ ${#local_cas[@]} -eq 0 ] || cp "${local_cas[@]}" "$work/go-ctx/ca/"
  cat >"$work/go-ctx/Dockerfile" <<DOCKERFILE
FROM $RUNTIME_TAG
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates git gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY go /usr/local/go
ENV GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /go
DOCKERFILE
  docker build -q -t "$GO_TAG" "$work/go-ctx" >/dev/null
  echo "base-images: built $GO_TAG from $(go version)"
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(debian|golang):" || true
