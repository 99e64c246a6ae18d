#!/bin/sh
# `make test-containers`: the container path proven on a real Docker engine (docs/testing.md).
#
# 1. An engine: the one already running, or dockerd started for this run and stopped at
#    its end (deploy/local-engine.sh; a developer's own engine is never touched).
# 2. The image, built from deploy/Dockerfile on the pinned python base where a registry
#    serves it, else on a base made from Debian's packages (deploy/local-base-image.sh);
#    and compose's NATS image, pulled, else a stand-in under its tag with the same
#    nats-server release (deploy/local-nats-image.sh).
# 3. The container backend's tests and the compose smoke test, which fail rather than
#    skip here if Docker or the image is missing (UNIBUS_REQUIRE_DOCKER).
set -eu
cd "$(dirname "$0")/.."
BIN=.venv/bin
IMAGE=$(sed -n 's/^  image: //p' deploy/compose.yaml | head -n 1)
NATS_IMAGE=$(sed -n 's/^ *image: \(nats:.*\)$/\1/p' deploy/compose.yaml | head -n 1)
started=$(deploy/local-engine.sh start)
export "$started"
trap 'deploy/local-engine.sh stop' EXIT INT TERM

python_image=$(sed -n 's/^ARG PYTHON_IMAGE=//p' deploy/Dockerfile)
if ! docker image inspect "$python_image" >/dev/null 2>&1 \
    && ! timeout 120 docker pull -q "$python_image" >/dev/null 2>&1; then
    echo "test-containers: $python_image cannot be pulled; building a base from Debian's packages" >&2
    python_image=$(deploy/local-base-image.sh)
fi
echo "test-containers: building $IMAGE on $python_image" >&2
start=$(date +%s)
docker build -q --build-arg PYTHON_IMAGE="$python_image" -f deploy/Dockerfile -t "$IMAGE" . >/dev/null
echo "test-containers: image built in $(($(date +%s) - start)) s" >&2
if ! docker image inspect "$NATS_IMAGE" >/dev/null 2>&1 \
    && ! timeout 120 docker pull -q "$NATS_IMAGE" >/dev/null 2>&1; then
    echo "test-containers: $NATS_IMAGE cannot be pulled; building a stand-in (deploy/local-nats-image.sh)" >&2
    deploy/local-nats-image.sh "$NATS_IMAGE" >/dev/null
fi

UNIBUS_REQUIRE_DOCKER=1 TESTCONTAINERS_RYUK_DISABLED=true UNIBUS_TEST_IMAGE="$IMAGE" \
    UNIBUS_TEST_BACKEND=container \
    "$BIN/pytest" -o addopts='' -rs tests/test_testing_backends.py tests/test_compose.py "$@"
