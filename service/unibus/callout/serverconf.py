"""The trust boundary as nats-server configuration: accounts, static users and the
auth callout. `deploy/nats/boundary.conf` is this text with `$UNIBUS_*_KEY` variables in
place of the keys (a test keeps the two identical); the embedded default fills in keys.

One account, `UNIBUS`, holds JetStream and everyone who uses it. Five static users skip
the callout (`auth_users`), each with the least it needs; every other connection is sent
to the callout, which issues it a user JWT for `UNIBUS` with permissions from its rooms
(`permissions.py`). The callout is answered by a user of its own that may publish callout
answers (`$SYS._INBOX.>`) and nothing else, while the responder, which answers requests
to reply subjects callers choose, may publish to `_INBOX.>` only: no caller can steer a
control reply into a pending authorization. The system user lives in `SYS` and can do
two things: list connections and cut one.
"""

from __future__ import annotations

from ..wire.names import (
    CALLOUT_REPLIES,
    CALLOUT_SUBJECT,
    CONTROL_PREFIX,
    INBOXES,
    bucket_name,
    control_subject,
    creations_subject,
    nonce_subject,
)

ACCOUNT = "UNIBUS"
"""The account every unibus connection lands in (a user JWT's `aud`)."""
SYSTEM_ACCOUNT = "SYS"
CONNECTION_EVENTS = (f"$SYS.ACCOUNT.{ACCOUNT}.CONNECT", f"$SYS.ACCOUNT.{ACCOUNT}.DISCONNECT")
"""What the servers publish for each connection of the account: the per-identity
connection limit counts from them (connections.py)."""


def render(public_keys: dict[str, str] | None = None, api_prefix: str = CONTROL_PREFIX) -> str:
    """The configuration block; `public_keys` maps ISSUER, SERVICE, RESPONDER, CALLOUT, SHIM
    and SYSTEM to public keys, or is None for `$UNIBUS_<ROLE>_KEY` variables."""

    def key(role: str) -> str:
        return f'"{public_keys[role]}"' if public_keys else f"$UNIBUS_{role}_KEY"

    def subjects(*items: str) -> str:
        return "[" + ", ".join(f'"{s}"' for s in items) + "]"

    control = control_subject(api_prefix, "")[:-1]
    # The in-process shim (`serve --http`) relays history requests and pings the service
    # for its /healthz on this connection.
    service_publish = (
        "$JS.API.>",
        "$JS.FC.>",
        # Acknowledging snapshot chunks and sending restore chunks: `unibus backup|restore`.
        "$JS.SNAPSHOT.>",
        f"$KV.{bucket_name(api_prefix)}.>",
        nonce_subject(api_prefix),
        creations_subject(api_prefix),
        f"{control}.*.history",
        "$SRV.PING",
        "$SRV.PING.>",
    )
    return f"""\
# The unibus trust boundary (docs/security.md). Only public keys appear here.
system_account: {SYSTEM_ACCOUNT}
accounts {{
  {ACCOUNT} {{
    jetstream: enabled
    users: [
      # The control plane's JetStream connection: room streams, the room bucket, the nonce stream.
      {{ nkey: {key("SERVICE")}, permissions: {{
          publish: {subjects(*service_publish)}
          subscribe: {subjects(f"{INBOXES['service']}.>")}
      }} }}
      # Answers control requests; may publish to inboxes only (peers', the shim's, the
      # in-process shim's), so no reply subject a caller chooses can reach JetStream or a
      # pending callout answer.
      {{ nkey: {key("RESPONDER")}, permissions: {{
          publish: {subjects("_INBOX.>", f"{INBOXES['service']}.>", f"{INBOXES['shim']}.>")}
          subscribe: {subjects(f"{control}.>", "$SRV.>")}
      }} }}
      # Answers the auth callout, and publishes nothing but those answers.
      {{ nkey: {key("CALLOUT")}, permissions: {{
          publish: {subjects(CALLOUT_REPLIES)}
          subscribe: {subjects(CALLOUT_SUBJECT)}
      }} }}
      # The HTTP shim: history requests and discovery, nothing else.
      {{ nkey: {key("SHIM")}, permissions: {{
          publish: {subjects(f"{control}.*.history", "$SRV.PING", "$SRV.PING.>")}
          subscribe: {subjects(f"{INBOXES['shim']}.>")}
      }} }}
    ]
  }}
  {SYSTEM_ACCOUNT} {{
    users: [
      # Finds an identity's connections and cuts them when its rooms change; counts them (connection limit).
      {{ nkey: {key("SYSTEM")}, permissions: {{
          publish: {subjects("$SYS.REQ.SERVER.PING.CONNZ", "$SYS.REQ.SERVER.*.KICK")}
          subscribe: {subjects(f"{INBOXES['system']}.>", *CONNECTION_EVENTS)}
      }} }}
    ]
  }}
}}
authorization {{
  # Every connection that is not one of the five users above goes to the callout.
  auth_callout {{
    issuer: {key("ISSUER")}
    account: {ACCOUNT}
    auth_users: [{", ".join(key(r) for r in ("SERVICE", "RESPONDER", "CALLOUT", "SHIM", "SYSTEM"))}]
  }}
}}
"""
