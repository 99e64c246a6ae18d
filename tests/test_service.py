"""The services-framework surface: discovery, the ADR-32 error convention, limits, no leaks."""

from __future__ import annotations

import json
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from unibus.cli import main as cli_main
from unibus.client import Conflict, ControlClient, Identity, NotFound, ServiceError, TooLarge
from unibus.config import AuthMode, Config
from unibus.natsserver import NatsServer, free_port
from unibus.runner import Running, running
from unibus.wire.names import ROOM_BUCKET

from harness.plane import StartPlane

EXPECTED = {
    "$UNIBUS.CTL.rooms.create",
    "$UNIBUS.CTL.rooms.list",
    "$UNIBUS.CTL.rooms.*.info",
    "$UNIBUS.CTL.rooms.*.history",
    "$UNIBUS.CTL.rooms.*.members",
    "$UNIBUS.CTL.rooms.*.members.add",
    "$UNIBUS.CTL.rooms.*.members.remove",
    "$UNIBUS.CTL.rooms.*.key",
    "$UNIBUS.CTL.rooms.*.key.rotate",
    "$UNIBUS.CTL.rooms.*.delete",
}


async def test_discoverable_through_srv(nc: Client, plane: Running) -> None:
    ping = json.loads((await nc.request("$SRV.PING.unibus-control-plane", b"", timeout=5)).data)
    assert ping["type"] == "io.nats.micro.v1.ping_response"
    info = json.loads((await nc.request(f"$SRV.INFO.unibus-control-plane.{ping['id']}", b"", timeout=5)).data)
    # Under the trust boundary the auth callout is an endpoint of the same service.
    assert {e["subject"] for e in info["endpoints"]} == EXPECTED | {"$SYS.REQ.USER.AUTH"}
    assert {e["queue_group"] for e in info["endpoints"]} == {"unibus"}
    stats = json.loads((await nc.request("$SRV.STATS.unibus-control-plane", b"", timeout=5)).data)
    assert stats["name"] == "unibus-control-plane"


async def test_errors_follow_adr32(nc: Client, plane: Running) -> None:
    reply = await nc.request("$UNIBUS.CTL.rooms.nowhere.info", b"", timeout=5)
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "401"
    assert reply.headers["Nats-Service-Error"] == "signature required"
    assert json.loads(reply.data) == {"error": "signature required"}


async def test_oversized_body_is_413(as_alice: ControlClient) -> None:
    with pytest.raises(TooLarge):
        await as_alice.request_raw("create", b"{" + b" " * (64 * 1024) + b"}")
    assert await as_alice.list_rooms() == []


async def test_a_corrupt_row_is_a_500_that_leaks_nothing(nc: Client, as_alice: ControlClient) -> None:
    await as_alice.create_room("fine")
    kv = await nc.jetstream().key_value(ROOM_BUCKET)
    await kv.put("broken", b"{not json at all")
    with pytest.raises(ServiceError) as caught:
        await as_alice.info("broken")
    assert (caught.value.code, caught.value.message) == (500, "internal error")
    # The instance keeps serving, and the other rooms are untouched.
    assert (await as_alice.info("fine"))["id"] == "fine"


async def test_two_deployments_with_other_prefixes_share_one_jetstream(
    start_plane: StartPlane, open_nats_server: NatsServer, alice: Identity
) -> None:
    """Each prefix keeps its own room bucket and replay-guard stream: a demo instance with
    another prefix, unsigned requests allowed, neither sees nor deletes this deployment's
    rooms. (On a server without the boundary: the shipped boundary names the default
    prefix only.)"""
    url = open_nats_server.url
    await start_plane(nats_url=url)
    await start_plane(
        nats_url=url,
        api_prefix="$OTHER.CTL",
        queue_group="other",
        service_name="other-plane",
        auth_mode=AuthMode.OFF,
    )
    nc = await nats.connect(url)
    production = ControlClient(nc, alice)
    await production.create_room("precious")
    demo = ControlClient(nc, None, prefix="$OTHER.CTL")
    assert await demo.list_rooms() == []
    with pytest.raises(NotFound):
        await demo.delete_room("precious")
    with pytest.raises(Conflict, match="another deployment"):  # nor adopt its stream by id
        await demo.create_room("precious", owner=alice.public_key)
    await demo.create_room("demo-only", owner=alice.public_key, mode="ephemeral")
    assert [r["id"] for r in await production.list_rooms()] == ["precious"]
    assert (await production.info("precious"))["owner"] == alice.public_key
    await nc.close()


async def test_nats_url_takes_comma_separated_seeds(
    tmp_path: Path, nats_server: NatsServer, nc: Client, alice: Identity
) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    config = Config(
        nats_url=f"{dead},{nats_server.url}", data_dir=str(tmp_path / "d"), keys_dir=str(tmp_path / "keys")
    )
    async with running(config):
        assert (await ControlClient(nc, alice).create_room("seeded"))["id"] == "seeded"


def test_serve_refuses_a_bad_http_address_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--nats-url", "nats://127.0.0.1:1", "--http", "nowhere"]) == 2
    assert "is not host:port" in capsys.readouterr().err


async def test_srv_stats_count_errors_and_real_processing_time(
    nc: Client, as_alice: ControlClient, plane: Running
) -> None:
    """Requests are handled in tasks, so the framework alone would count no error and
    microseconds per request: the counters come from where each request finishes."""
    await as_alice.create_room("counted")
    with pytest.raises(Conflict):
        await as_alice.create_room("counted")
    with pytest.raises(NotFound):
        await as_alice.info("nowhere")
    stats = json.loads((await nc.request("$SRV.STATS.unibus-control-plane", b"", timeout=5)).data)
    by_name = {e["name"]: e for e in stats["endpoints"]}
    create, info = by_name["create"], by_name["info"]
    assert (create["num_requests"], create["num_errors"]) == (2, 1)
    assert create["last_error"] == "409 room already exists"
    assert (info["num_errors"], info["last_error"]) == (1, "404 room not found")
    # A create writes a stream and a row: far more than the framework's dispatch alone.
    assert create["processing_time"] > 100_000  # ns


async def test_a_room_whose_stream_name_is_taken_is_a_conflict_not_a_failure(
    start_plane: StartPlane, open_nats_server: NatsServer, alice: Identity
) -> None:
    """`UNIBUS_<id>` made by hand without the room's subject: a create of that room is 409
    (retrying would not help) and makes nothing; a room whose stream was replaced so is 409
    on read, never a 500. The stream is left as it was, never adopted."""
    url = open_nats_server.url
    await start_plane(nats_url=url)
    nc = await nats.connect(url)
    try:
        js, client = nc.jetstream(), ControlClient(nc, alice)
        await js.add_stream(name="UNIBUS_handmade", subjects=["elsewhere.handmade"])
        with pytest.raises(Conflict, match="in use by another deployment or stream"):
            await client.create_room("handmade")
        assert await client.list_rooms() == []

        await client.create_room("replaced")
        await js.delete_stream("UNIBUS_replaced")
        await js.add_stream(name="UNIBUS_replaced", subjects=["elsewhere.replaced"])
        with pytest.raises(Conflict, match="in use by another deployment or stream"):
            await client.history("replaced")
        for stream, subject in (
            ("UNIBUS_handmade", "elsewhere.handmade"),
            ("UNIBUS_replaced", "elsewhere.replaced"),
        ):
            assert (await js.stream_info(stream)).config.subjects == [subject]
    finally:
        await nc.close()
