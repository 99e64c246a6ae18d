"""Service configuration: one dataclass, filled from flags or `UNIBUS_*` environment variables.

Every knob an operator may need in a container lives here, so the Dockerfile, the compose
file and the CLI all speak the same names (see the README's table).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from .wire import names


class AuthMode(StrEnum):
    """How strictly signed request headers are checked.

    enforce: every request must carry a valid signature (401 otherwise).
    dev: unsigned requests pass as anonymous; a present but bad signature is still 401,
         so a client bug never silently downgrades to anonymous.
    off: nothing is verified; the claimed signer is trusted (tests and demos only).
    """

    ENFORCE = "enforce"
    DEV = "dev"
    OFF = "off"


@dataclass(frozen=True)
class Config:
    nats_url: str | None = None
    """NATS to join (comma-separated seeds for a cluster). None starts an embedded
    nats-server with JetStream on loopback."""
    nats_creds: str | None = None
    """Credentials file for the service's own NATS connection (optional)."""
    data_dir: str = "./data"
    """Where the embedded nats-server keeps JetStream, and where the SQLite fallback lives."""
    api_prefix: str = names.CONTROL_PREFIX
    """Control endpoints answer on `<api_prefix>.rooms.…`."""
    room_subject_prefix: str = names.ROOM_SUBJECT_PREFIX
    """A room's data subject is `<room_subject_prefix>.<roomID>`."""
    queue_group: str = names.QUEUE_GROUP
    service_name: str = names.SERVICE_NAME
    auth_mode: AuthMode = AuthMode.ENFORCE
    clock_skew_s: float = 120.0
    """Signed timestamps further than this from the service's clock are refused."""
    replicas: int = 0
    """Replication of room streams and the room bucket; 0 picks 3 on a cluster, 1 standalone."""
    room_max_bytes: int = 16 * 1024 * 1024
    """Per room stream: beyond this the oldest frames are dropped, so no room's publishers
    can fill the JetStream store for everyone. JetStream reserves it for each persisted
    room, so it is also what one room costs of `creator_store_bytes`."""
    creator_store_bytes: int = 1024 * 1024 * 1024
    """What one identity's persisted rooms may reserve in the JetStream store together
    (403 beyond): 64 rooms at the default `room_max_bytes` (docs/security.md, "Admission
    model")."""
    bucket_max_bytes: int = 64 * 1024 * 1024
    """Space the room bucket reserves in the JetStream store: out of room traffic's reach
    (docs/operations.md, "Storage layout"). About 1 KiB per room row."""
    nonces_max_bytes: int = 128 * 1024 * 1024
    """Space the nonce stream reserves: 195 bytes per signed request held for twice the
    clock skew, so 128 MiB carries about 2,900 signed requests a second."""
    room_max_msg_size: int = 0
    """Largest frame a room stream stores; 0 derives it from the server's max_payload so
    that every stored frame fits in one history page, in JSON too (docs/protocol.md)."""
    history_cache_bytes: int = 64 * 1024 * 1024
    """Frames one instance keeps of recently read rooms, checked against the stream on
    every read (history/cache.py); 0 reads every page from JetStream."""
    js_timeout_s: float = 5.0
    """Bound on every JetStream operation, so a stalled data plane cannot hang a request."""
    max_body_bytes: int = 64 * 1024
    max_in_flight: int = 256
    """Requests handled concurrently by one instance; further ones wait in the NATS client."""
    max_rooms_per_creator: int = 1000
    """Rooms one identity may own (403 beyond): each is a stream on the shared store."""
    max_rooms_per_member: int = 1000
    """Rooms one identity may be in (403 for the add beyond): its `list` reply and the
    permissions the callout grants it grow with them."""
    max_members_per_room: int = 1000
    """Members of one room (403 for the add beyond)."""
    creates_per_second: float = 10.0
    """Room creations one identity may make per second, in bursts of 50 (429 beyond),
    counted across every instance of the deployment (endpoints/creations.py)."""
    creators: str = ""
    """Comma-separated identity keys that alone may create rooms (403 for anyone else, and
    for unsigned creates); empty: any identity may."""
    max_connections_per_identity: int = 100
    """Connections one identity may hold at once across the cluster: the auth callout
    refuses the next (0: no limit)."""
    use_jetstream: bool = True
    """False forces the SQLite store and empty histories, as on a NATS without JetStream."""
    http_listen: str | None = None
    """`host:port` for the optional HTTP shim started beside the service."""
    metrics_listen: str | None = None
    """`host:port` for a Prometheus scrape endpoint (`/metrics`) of the service, or of the
    shim when it runs alone; off when unset."""
    cors_origins: str = ""
    """Comma-separated browser origins the HTTP shim grants CORS (none by default; `*`: any)."""
    websocket_port: int = 8080
    """Embedded server only: websocket listener for browsers on loopback. Fixed, so a
    page's saved server URL survives a restart; 8080, the websocket port of every shipped
    configuration (docs/deploy.md, "Ports"); 0 picks a free port, -1 disables it."""
    embedded_port: int = 4222
    """Embedded server only: client port on loopback (0 picks a free one)."""
    embedded_monitor_port: int = -1
    """Embedded server only: nats-server's HTTP monitoring (`/healthz`, `/varz`, `/jsz`)
    on loopback. Off (-1) by default: it lists every connection, which nobody on a
    developer's machine needs unasked; 8222 is nats-server's usual port, 0 a free one."""
    keys_dir: str | None = None
    """The trust boundary's seeds (`unibus boundary init DIR`, docs/security.md): the service
    connects with them and answers the auth callout. Unset: the embedded server keeps
    them under `<data_dir>/keys`; an external NATS is joined without them (no boundary)."""
    nkey: str | None = None
    """Seed file a `unibus shim` connects with: the shim's user under the trust boundary
    (`shim.nk` from `unibus boundary init`)."""
    callout_ttl_s: float = 300.0
    """Lifetime of the user JWTs the callout issues: the backstop for a revocation every
    instance missed (docs/security.md); clients re-authorize when it ends."""
    revocation_sweep_s: float = 60.0
    """Every instance re-checks every connection's grant against the rooms this often,
    besides on every lost membership and when it starts (callout/revoker.py)."""
    connz_page_size: int = 256
    """Connections per CONNZ page the revoker asks each server for."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Config:
        """Build a config from `UNIBUS_<FIELD>` variables; explicit overrides win."""
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get("UNIBUS_" + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "auth_mode" in values:
            try:
                values["auth_mode"] = AuthMode(values["auth_mode"])
            except ValueError:
                choices = ", ".join(mode.value for mode in AuthMode)
                raise ValueError(
                    f"UNIBUS_AUTH_MODE (--auth): {values['auth_mode']!r} is not one of {choices}"
                ) from None
        return cls(**values)

    @property
    def reachable_nats_url(self) -> str:
        """The NATS a command run beside the service reaches: the configured one, else the
        embedded server's client port on loopback."""
        return self.nats_url or f"nats://127.0.0.1:{self.embedded_port}"

    @property
    def allowed_creators(self) -> frozenset[str]:
        return frozenset(key.strip() for key in self.creators.split(",") if key.strip())

    @property
    def allowed_origins(self) -> frozenset[str]:
        return frozenset(o.strip() for o in self.cors_origins.split(",") if o.strip())


class CannotListen(OSError):
    """A listener (`what`: the HTTP shim, the metrics endpoint) could not bind `address`:
    a start-up failure the user fixes with a setting, told as one line."""

    def __init__(self, what: str, address: str, cause: OSError) -> None:
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        super().__init__(cause.errno, f"cannot listen on {address} for the {what}: {reason}")
        self.what = what


def parse_listen(value: str, setting: str = "") -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); a clear ValueError otherwise, naming
    `setting` (the variable and flag the value came from) when given."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        named = f"{setting}: " if setting else ""
        raise ValueError(f"{named}listen address {value!r} is not host:port (e.g. 127.0.0.1:9100)")
    return host.strip("[]") or "0.0.0.0", int(port)


_INTS = {
    "connz_page_size",
    "room_max_bytes",
    "bucket_max_bytes",
    "nonces_max_bytes",
    "history_cache_bytes",
    "room_max_msg_size",
    "replicas",
    "max_body_bytes",
    "max_in_flight",
    "max_rooms_per_creator",
    "creator_store_bytes",
    "max_connections_per_identity",
    "max_rooms_per_member",
    "max_members_per_room",
    "websocket_port",
    "embedded_port",
    "embedded_monitor_port",
}
_FLOATS = {"clock_skew_s", "js_timeout_s", "callout_ttl_s", "revocation_sweep_s", "creates_per_second"}
_BOOLS = {"use_jetstream"}


def _coerce(name: str, raw: str) -> Any:
    try:
        if name in _INTS:
            return int(raw)
        if name in _FLOATS:
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"UNIBUS_{name.upper()}: {raw!r} is not a number") from exc
    if name in _BOOLS:
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            raise ValueError(
                f"UNIBUS_{name.upper()}: {raw!r} is not one of true, false (or 1, 0, yes, no, on, off)"
            )
        return word in _TRUE
    return raw


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
