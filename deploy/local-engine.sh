#!/bin/sh
# A Docker engine for the container tests where none is running (docs/testing.md).
#
#   deploy/local-engine.sh start   # prints DOCKER_HOST=… for the engine to use
#   deploy/local-engine.sh stop    # stops the engine this script started, and only it
#
# If an engine already answers (DOCKER_HOST, or the default socket), `start` prints its
# address and changes nothing, and `stop` leaves it alone: a developer's own engine is
# never touched. Otherwise `start` installs Debian's docker.io, docker-compose and
# debootstrap when missing (root, apt-get) and runs dockerd with the vfs storage driver
# (it works inside containers and sandboxes without overlayfs) on its own socket, data
# and exec directories under UNIBUS_ENGINE_DIR, remembering its pid for `stop`.
set -eu

ROOT=${UNIBUS_ENGINE_DIR:-/tmp/unibus-engine}
SOCK="$ROOT/docker.sock"
PIDFILE="$ROOT/dockerd.pid"
OURS="unix://$SOCK"

answers() {
    DOCKER_HOST="$1" docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

install_packages() {
    missing=""
    command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
    command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
    command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
    [ -z "$missing" ] && return 0
    echo "local-engine: installing$missing" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2
}

start() {
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && answers "$OURS"; then
        echo "DOCKER_HOST=$OURS"
        return 0
    fi
    existing=${DOCKER_HOST:-unix:///var/run/docker.sock}
    if command -v docker >/dev/null 2>&1 && answers "$existing"; then
        echo "local-engine: using the engine already running at $existing" >&2
        echo "DOCKER_HOST=$existing"
        return 0
    fi
    install_packages
    mkdir -p "$ROOT/data" "$ROOT/exec"
    # Its own containerd namespace too, so it never shares state with another engine's.
    dockerd --storage-driver vfs --data-root "$ROOT/data" --exec-root "$ROOT/exec" \
        --host "$OURS" --pidfile "$PIDFILE" \
        --containerd-namespace unibus-engine --containerd-plugins-namespace unibus-engine-plugins \
        >"$ROOT/dockerd.log" 2>&1 &
    tries=0
    until answers "$OURS"; do
        tries=$((tries + 1))
        if [ "$tries" -gt 120 ]; then
            echo "local-engine: dockerd did not answer within 60 s; its log:" >&2
            tail -n 30 "$ROOT/dockerd.log" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "local-engine: dockerd $(DOCKER_HOST=$OURS docker version --format '{{.Server.Version}}') at $OURS (log $ROOT/dockerd.log)" >&2
    echo "DOCKER_HOST=$OURS"
}

stop() {
    [ -f "$PIDFILE" ] || return 0
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        tries=0
        while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 60 ]; do
            tries=$((tries + 1))
            sleep 0.5
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    echo "local-engine: stopped dockerd $pid" >&2
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
