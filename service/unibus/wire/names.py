"""Every name peers, the shim and the service must spell alike: subjects, streams, buckets,
inboxes and headers (docs/protocol.md). Each is written here once; a second spelling
elsewhere would be a second protocol waiting to drift.

The ADR-32 error headers are nats.py's own (`nats.micro.request`), re-exported so that
code answering and code reading an error name them the same way.
"""

from __future__ import annotations

import hashlib

from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER
from nats.micro.service import ServiceVerb
from nats.micro.service import control_subject as micro_subject

__all__ = [
    "CALLOUT_REPLIES",
    "CALLOUT_SUBJECT",
    "CONTROL_PREFIX",
    "ERROR_CODE_HEADER",
    "ERROR_HEADER",
    "INBOXES",
    "NONCE_STREAM",
    "QUEUE_GROUP",
    "ROLES",
    "ROOM_BUCKET",
    "ROOM_STREAM_PREFIX",
    "ROOM_SUBJECT_PREFIX",
    "SERVICE_NAME",
    "STORED",
    "bucket_name",
    "control_subject",
    "nonce_stream_name",
    "nonce_subject",
    "ping_subject",
    "stored_subject",
    "stream_name",
]

CONTROL_PREFIX = "$UNIBUS.CTL"
"""Control endpoints answer on `<prefix>.rooms.…`; a deployment may choose another prefix."""
SERVICE_NAME = "unibus-control-plane"
"""The micro service's name in `$SRV` discovery."""
QUEUE_GROUP = "unibus"
ROOM_SUBJECT_PREFIX = "unibus.room"
"""A room's data subject is `<prefix>.<roomID>`."""
CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
"""Where nats-server sends auth callout requests (ADR-26)."""
CALLOUT_REPLIES = "$SYS._INBOX.>"
"""Where nats-server takes a callout's answer: each request's reply subject is under it."""

ROLES = ("service", "responder", "callout", "shim", "system")
"""The static users of the trust boundary (callout/serverconf.py). service: JetStream, the
room bucket and the nonce stream. responder: answers control requests, and may publish
nowhere but inboxes. callout: answers the auth callout, and may publish nowhere but the
server's callout replies. shim: history requests only. system: finds and cuts an
identity's connections (system account)."""
INBOXES = {role: f"_UNIBUS_INBOX.{role}" for role in ROLES}
"""Inbox prefixes of the static users: the control plane's JetStream replies, its bucket
watch's deliveries and the shim's replies arrive under them. Outside `_INBOX`, so that no
`_INBOX` wildcard matches them (dev mode's connections without an nkey may subscribe under
`_INBOX`; a subscription permission's deny is checked against a JetStream delivery's
stream subject, not the inbox it is delivered to, so a deny could not keep them out).
A peer's is `_INBOX.<its U… key>`."""

ROOM_STREAM_PREFIX = "UNIBUS_"
ROOM_BUCKET = "UNIBUS_ROOMS"
"""The room bucket of the default control prefix (existing deployments keep it)."""
NONCE_STREAM = "UNIBUS-NONCES"
"""Not `UNIBUS_<x>`: that form belongs to room streams, and a room id must never collide."""
CREATIONS_STREAM = "UNIBUS-CREATIONS"
"""Recent room creations per identity, for the creation rate (as the nonce stream's name)."""


def control_subject(api_prefix: str, suffix: str) -> str:
    """`<prefix>.rooms.<suffix>`: `create`, `list`, `<id>.info`, `<id>.history`, …"""
    return f"{api_prefix}.rooms.{suffix}"


def ping_subject(service_name: str) -> str:
    """`$SRV.PING.<name>`, which any instance of the service answers (ADR-32 discovery)."""
    return micro_subject(ServiceVerb.PING, service_name)


STORED = "stored"
"""The last token of a room's **stored** subject, `<room subject>.stored`: JetStream
republishes every frame the room's stream stores there, stamped with its stream sequence
(docs/protocol.md, "Following a room"). Nobody but the server publishes on it."""


def stored_subject(room_subject: str) -> str:
    """`unibus.room.lobby` → `unibus.room.lobby.stored`."""
    return f"{room_subject}.{STORED}"


def stream_name(room_id: str) -> str:
    """`UNIBUS_<roomID>`: the same derivation as the Go client, which may ensure it too."""
    return f"{ROOM_STREAM_PREFIX}{room_id}"


def _per_prefix(name: str, api_prefix: str) -> str:
    if api_prefix == CONTROL_PREFIX:
        return name
    return f"{name}-{hashlib.sha256(api_prefix.encode()).hexdigest()[:12]}"


def bucket_name(api_prefix: str) -> str:
    """One bucket per control prefix, like the nonce stream: a demo instance with another
    prefix on the same JetStream must not read or change this deployment's rooms."""
    return _per_prefix(ROOM_BUCKET, api_prefix)


def nonce_subject(api_prefix: str) -> str:
    """Where replay claims are published; only the control plane's own connection may."""
    return f"{api_prefix}.nonces"


def nonce_stream_name(api_prefix: str) -> str:
    """One stream per deployment: control planes with other prefixes on the same JetStream
    keep their own (a shared one would have its subject rewritten by each in turn)."""
    return _per_prefix(NONCE_STREAM, api_prefix)


def creations_subject(api_prefix: str, identity: str = "*") -> str:
    """Where the control plane counts an identity's creations; only it may publish there."""
    return f"{api_prefix}.creations.{identity}"


def creations_stream_name(api_prefix: str) -> str:
    """One stream per deployment, as the nonce stream."""
    return _per_prefix(CREATIONS_STREAM, api_prefix)
