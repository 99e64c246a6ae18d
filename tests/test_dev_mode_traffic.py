"""Dev mode admits connections without an nkey, with a plain `_INBOX.<id>` for their
replies; none of the control plane's own traffic (the room bucket's watch deliveries,
JetStream replies) nor a peer's replies may reach such a connection, whatever it
subscribes to under `_INBOX` (docs/security.md, Auth modes)."""

from __future__ import annotations

import asyncio

from unibus.client import ControlClient, Identity
from unibus.config import AuthMode
from unibus.wire.interest import confirm_interest

from harness.boundary import connect_as
from harness.plane import StartPlane


async def test_an_anonymous_inbox_wildcard_sees_none_of_the_services_traffic(
    start_plane: StartPlane, alice: Identity
) -> None:
    plane = await start_plane(auth_mode=AuthMode.DEV)
    eavesdropper = await connect_as(plane.nats_url, None)
    owner = await connect_as(plane.nats_url, alice)
    seen: list[str] = []

    async def record(msg) -> None:  # type: ignore[no-untyped-def]
        seen.append(msg.subject)

    try:
        # Its own requests are answered (before it listens: the answers would count).
        assert await ControlClient(eavesdropper.nc, None).list_rooms() == []
        await eavesdropper.nc.subscribe("_INBOX.>", cb=record)
        await eavesdropper.nc.subscribe(">", cb=record)
        assert await eavesdropper.refused("subscription", ">")
        await confirm_interest(eavesdropper.nc)
        client = ControlClient(owner.nc, alice)
        await client.create_room("demo", persisted=True)
        await client.add_member("demo", Identity.generate().public_key)
        await client.history("demo")
        assert [r["id"] for r in await client.list_rooms()] == ["demo"]
        await asyncio.sleep(1.0)  # deliveries that would come, came
        assert seen == [], seen
    finally:
        await eavesdropper.nc.close()
        await owner.nc.close()
