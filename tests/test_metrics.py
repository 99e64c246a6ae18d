"""Prometheus metrics: off by default; when asked for, the service's and the shim's
scrape endpoints count requests by endpoint (route) and status code, time them, and
show the frame cache."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from dataclasses import replace

import aiohttp
import pytest
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from unibus.callout.keys import BoundaryKeys
from unibus.client import ControlClient, Identity, NotFound, Unavailable
from unibus.history import Backlog
from unibus.natsserver import NatsServer
from unibus.shim import ShimSettings, serving
from unibus.wire.signing import sign_request

from harness.boundary import connect_as
from harness.plane import StartPlane
from harness.waiting import wait_history


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) → value."""
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_are_off_unless_asked_for(start_plane: StartPlane) -> None:
    assert (await start_plane()).plane.metrics_url is None


async def test_the_service_counts_requests_by_endpoint_and_code(
    start_plane: StartPlane, nc: Client, alice: Identity
) -> None:
    running = await start_plane(metrics_listen="127.0.0.1:0")
    url = running.plane.metrics_url
    assert url is not None and url.startswith("http://127.0.0.1:")
    client = ControlClient(nc, alice)
    room = await client.create_room("measured", encrypted=False)
    await nc.publish(room["subject"], b"frame")
    await wait_history(client, "measured", 1)
    await client.history("measured")
    for _ in range(3):
        with contextlib.suppress(NotFound):
            await client.info("nowhere")
    after = await scrape(url)

    def value(name: str, **labels: str) -> float:
        return after.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("unibus_requests_total", endpoint="create", code="200") == 1
    assert value("unibus_requests_total", endpoint="info", code="404") == 3
    reads = value("unibus_requests_total", endpoint="history", code="200")
    assert reads >= 2
    assert value("unibus_request_seconds_count", endpoint="history") == reads
    assert value("unibus_requests_in_flight") == 0
    assert value("unibus_history_cache_limit_bytes") == running.config.history_cache_bytes
    assert value("unibus_history_cache_hits_total") >= 1  # the last read found the frame kept
    # The frame, and the page last cut from it, which the cache keeps and counts in its bound.
    assert running.plane.deps is not None
    cache = running.plane.deps.backlog.cache
    assert value("unibus_history_cache_bytes") == cache.size > len(b"frame")


async def test_the_shim_counts_by_route_not_by_path(
    nats_server: NatsServer, boundary_keys: BoundaryKeys, alice: Identity
) -> None:
    settings = ShimSettings(host="127.0.0.1", port=0, metrics_listen="127.0.0.1:0")
    async with (
        serving(settings, nats_url=nats_server.url, identity=boundary_keys.users["shim"]) as shim,
        aiohttp.ClientSession() as http,
    ):
        assert shim.metrics_url is not None
        for room in ("a!", "b!"):  # refused before NATS: a bad room id is 400
            headers = sign_request(alice, f"$UNIBUS.CTL.rooms.{room}.history", b"")
            async with http.get(f"{shim.url}/rooms/{room}/history", headers=headers) as response:
                assert response.status == 400
        for path in ("/nope", "/rooms"):
            async with http.get(f"{shim.url}{path}") as response:
                assert response.status == 404
        samples = await scrape(shim.metrics_url)
    routes = {dict(labels)["route"] for name, labels in samples if name == "unibus_shim_requests_total"}
    assert routes == {"/rooms/{id}/history", "unmatched"}
    key = ("unibus_shim_requests_total", (("code", "400"), ("route", "/rooms/{id}/history")))
    assert samples[key] == 2
    assert samples[("unibus_shim_requests_total", (("code", "404"), ("route", "unmatched")))] == 2


async def test_callout_decisions_and_jetstream_failures_are_counted(
    start_bounded: StartPlane, alice: Identity
) -> None:
    running = await start_bounded(metrics_listen="127.0.0.1:0")
    url = running.plane.metrics_url
    assert url is not None
    member = await connect_as(running.nats_url, alice)
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await connect_as(running.nats_url, None)  # no nkey: refused under enforce
    client = ControlClient(member.nc, alice)
    await client.create_room("slow", encrypted=False)

    # JetStream that no longer answers in time, for real: the service's own requests to it
    # get a timeout far below any round trip (the read index's stream state included).
    plane = running.plane
    assert plane.deps is not None
    plane.deps = replace(
        plane.deps,
        config=replace(plane.deps.config, js_timeout_s=1e-6),
        backlog=Backlog(
            plane.nc, plane.deps.js, plane.deps.streams, 1e-6, plane.deps.config.history_cache_bytes
        ),
    )
    with pytest.raises(Unavailable):
        await client.history("slow")
    after = await scrape(url)
    await member.nc.close()

    def value(name: str, **labels: str) -> float:
        return after.get((name, tuple(sorted(labels.items()))), 0.0)

    admitted = value("unibus_callout_decisions_total", decision="member")
    refused = value("unibus_callout_decisions_total", decision="refused")
    assert admitted >= 1 and refused >= 1
    assert value("unibus_callout_seconds_count") == admitted + refused
    failures = {
        labels: count
        for (name, labels), count in after.items()
        if name == "unibus_jetstream_errors_total" and ("endpoint", "history") in labels
    }
    assert sum(failures.values()) >= 1, after
    assert value("unibus_requests_total", endpoint="history", code="503") >= 1
