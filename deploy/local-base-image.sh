#!/bin/sh
# A Python base image made from Debian's packages, for machines that reach Debian's
# archive and PyPI but no image registry (docs/testing.md). Prints the image's name.
#
#   deploy/local-base-image.sh                  # builds unibus-local/python:3.11-bookworm once
#   docker build --build-arg PYTHON_IMAGE=unibus-local/python:3.11-bookworm -f deploy/Dockerfile .
#
# deploy/Dockerfile's default stays the official python image: this one is only ever
# used through PYTHON_IMAGE. It holds what the Dockerfile needs of python:3.11-slim
# (python with venv, useradd) and, so that pip inside `docker build` trusts the same
# HTTPS endpoints as the host's pip, the host's CA bundle (PIP_CERT / SSL_CERT_FILE).
set -eu

TAG=${1:-unibus-local/python:3.11-bookworm}
ROOTFS_TAG=unibus-local/debian:bookworm-minbase
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${UNIBUS_CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "$TAG"
    exit 0
fi

work=$(mktemp -d /tmp/unibus-base.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! docker image inspect "$ROOTFS_TAG" >/dev/null 2>&1; then
    echo "local-base-image: debootstrap bookworm from $MIRROR" >&2
    debootstrap --variant=minbase bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        exit 1
    }
    tar -C "$work/rootfs" -c . | docker import - "$ROOTFS_TAG" >/dev/null
    rm -rf "$work/rootfs"
fi

mkdir -p "$work/context"
cp "$CA_BUNDLE" "$work/context/ca-bundle.crt"
cat >"$work/context/Dockerfile" <<EOF
FROM $ROOTFS_TAG
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      python3 python3-venv python-is-python3 passwd \\
 && rm -rf /var/lib/apt/lists/*
COPY ca-bundle.crt /usr/local/share/unibus/ca-bundle.crt
ENV PIP_CERT=/usr/local/share/unibus/ca-bundle.crt \\
    SSL_CERT_FILE=/usr/local/share/unibus/ca-bundle.crt \\
    LANG=C.UTF-8
CMD ["python3"]
EOF
echo "local-base-image: building $TAG" >&2
docker build -q -t "$TAG" "$work/context" >&2
echo "$TAG"
