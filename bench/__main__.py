"""`python -m bench` (`make bench`): every measurement in one run, printed and written to
docs/benchmarks.md with the machine's core count, the date and the command."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from unibus.client import ControlClient, Identity
from unibus.wire.names import INBOXES

from . import boundary, follow_churn, gofloor, largest_grant, revocation, scale, storm
from . import scenarios as sc
from .measure import Latency
from .report import METHOD, fmt_ms, latency_table, plot
from .rows import measure_part as instance_rows
from .stack import connect, stack

LIMITS = [10, 50, 100, 200, 500, 1000]
DOCS = Path(__file__).resolve().parent.parent / "docs"


async def run(workdir: Path, quick: bool) -> tuple[list[str], dict[str, dict[int, Latency]]]:
    runs = 30 if quick else 200
    seconds = 2.0 if quick else 10.0
    binary = gofloor.build(workdir)
    # Reads, floors, CPU, throughput and interference on the shipped trust boundary, as
    # every shipped configuration runs: peers connect as themselves (their reads answered
    # to their own inbox), and only the control plane's `service` user reaches JetStream.
    with stack(workdir / "bounded", boundary=True) as st:
        assert st.keys is not None
        owner = Identity.generate()
        # Round one's path first: no frame cache, every page from JetStream.
        uncached = st.start_service(UNIBUS_HISTORY_CACHE_BYTES="0")
        nc = await st.peer(owner)
        await st.wait_services(nc, 1)
        js_nc = await st.privileged()
        client = ControlClient(nc, owner)
        stream = await sc.seed_room(client, js_nc, "bench")
        go_history = ("-mode", "history", "-url", st.url, "-subject", "$UNIBUS.CTL.rooms.bench.history")
        go_args = ("-limits", ",".join(map(str, LIMITS)), "-runs", str(runs))

        results = {}
        for allow_direct in (False, True):
            await sc.set_allow_direct(js_nc, stream, allow_direct)
            results["on" if allow_direct else "off"] = await sc.history_latencies(
                client, js_nc, "bench", stream, LIMITS, runs
            )
        await sc.set_allow_direct(js_nc, stream, False)
        off = results["off"]
        if binary is not None:
            off["go floor"] = await gofloor.run(
                binary,
                st.keys.users["service"],
                workdir,
                *("-mode", "floor", "-url", st.url, "-inbox", INBOXES["service"], "-stream", stream),
                *("-subject", "unibus.room.bench", "-last", str(sc.BACKLOG), *go_args),
            )
        before = await sc.throughput(st, client, "bench", 50, 32, seconds)
        st.stop_service(uncached)

        # Cold: the cache on but too small to keep anything, so every read misses and pays
        # for trying. Warm: the default cache, the room's frames already in it.
        cold = st.start_service(UNIBUS_HISTORY_CACHE_BYTES="1")
        await st.wait_services(nc, 1)
        off["cold"] = await sc.service_latencies(client, "bench", LIMITS, runs)
        if binary is not None:
            off["go cold"] = await gofloor.run(binary, owner, workdir, *go_history, *go_args)
        st.stop_service(cold)
        st.start_service()
        await st.wait_services(nc, 1)
        off["warm"] = await sc.service_latencies(client, "bench", LIMITS, runs)
        if binary is not None:
            off["go warm"] = await gofloor.run(binary, owner, workdir, *go_history, *go_args)

        one = await sc.throughput(st, client, "bench", 50, 32, seconds)
        alone, loaded = await sc.interference(st, client, "bench", runs)
        st.start_service()
        await st.wait_services(nc, 2)
        two = await sc.throughput(st, client, "bench", 50, 32, seconds)
        alone2, loaded2 = await sc.interference(st, client, "bench", runs)
        await nc.close()
        await js_nc.close()

    # Capacity and membership, which the boundary does not change: on an open server.
    with stack(workdir / "open") as st:
        st.start_service()
        nc = await connect(st.url)
        await st.wait_services(nc, 1)
        st.start_service()
        await st.wait_services(nc, 2)
        revoke = await sc.revocation_delay(st, Identity.generate(), 20 if quick else 100)
        create_rate = await sc.creation_rate(
            ControlClient(nc, Identity.generate()), 100 if quick else 500, 16
        )
        rss = await sc.resident_memory(st, 1000 if quick else 10_000, 10)
        await nc.close()
    bounded = await part("boundary", boundary.measure(workdir, quick))
    bounded += await part("storm", storm.measure(workdir, quick))
    bounded += await part("largest grant", largest_grant.measure(workdir, quick))
    scaled = await part("scale", scale.measure(workdir, quick))
    scaled += await part("rows", instance_rows(quick))
    churned = await part("follow churn", follow_churn.measure(workdir, quick))
    revoked = await part("revocation", revocation.measure(workdir, quick))

    w1000, s1000, c1000 = off["warm"][1000], off["service"][1000], off["cold"][1000]
    b1000 = off["baseline"][1000]
    floor_name, f1000 = fastest_floor(off, 1000)
    cpu, cpu0 = one.cpu_us_per_request, before.cpu_us_per_request
    rows = [
        (
            f"warm history(limit=1000) p50, Python caller / faster floor ({floor_name}) p50",
            f"{fmt_ms(w1000.p50)} / {fmt_ms(f1000.p50)} ({w1000.p50 / f1000.p50:.2f}x)",
            "≤ 1.0x",
        ),
        *go_rows("warm", off, f1000, "≤ 1.0x"),
        ("… vs original algorithm", f"{b1000.p50 / w1000.p50:.1f}x faster", "≥ 30x"),
        (
            "cold history(limit=1000) p50, Python caller / faster floor p50",
            f"{fmt_ms(c1000.p50)} / {fmt_ms(f1000.p50)} ({c1000.p50 / f1000.p50:.2f}x)",
            "≤ 2.0x",
        ),
        *go_rows("cold", off, f1000, "≤ 2.0x"),
        ("… cold vs original algorithm", f"{b1000.p50 / c1000.p50:.1f}x faster", "≥ 30x"),
        ("… cold (cache missing) / no cache p50", f"{fmt_ms(c1000.p50)} / {fmt_ms(s1000.p50)}", "no slower"),
        (
            "warm history(limit=50), CPU per request: service + nats-server",
            f"{cpu['service']:.0f} + {cpu['nats-server']:.0f} = {cpu['service'] + cpu['nats-server']:.0f} µs"
            f" (no cache: {cpu0['service']:.0f} + {cpu0['nats-server']:.0f} µs)",
            "≤ 250 µs service, ≤ 400 µs total",
        ),
        (
            "history(limit=50), 1 instance, concurrency 32, warm / no cache",
            f"{one.rps:,.0f} / {before.rps:,.0f} req/s,"
            f" p99 {fmt_ms(one.latency.p99)} / {fmt_ms(before.latency.p99)}",
            "",
        ),
        (
            "history(limit=50), 2 instances, concurrency 32, warm",
            f"{two.rps:,.0f} req/s ({two.rps / one.rps:.2f}x), p99 {fmt_ms(two.latency.p99)}",
            "≥ 1.6x",
        ),
        ("… CPU per request, 1 instance warm: service / nats-server / client", cpu_split(one), ""),
        ("… CPU per request, 1 instance no cache: service / nats-server / client", cpu_split(before), ""),
        ("… CPU per request, 2 instances warm: services / nats-server / client", cpu_split(two), ""),
        (
            "history(limit=10) p50 alone / beside a limit=1000 in flight, 1 instance",
            f"{fmt_ms(alone.p50)} / {fmt_ms(loaded.p50)} (+{loaded.p50 - alone.p50:.2f} ms)",
            "≤ +2 ms",
        ),
        (
            "… the same with 2 instances in the queue group",
            f"{fmt_ms(alone2.p50)} / {fmt_ms(loaded2.p50)} (+{loaded2.p50 - alone2.p50:.2f} ms)",
            "≤ +2 ms",
        ),
        (
            "removed member's next read refused, 2 instances, p50 / max",
            f"{fmt_ms(revoke.p50)} / {fmt_ms(max(revoke.samples_ms))}",
            "≤ 100 ms",
        ),
        ("persisted-room creation, 16 concurrent callers", f"{create_rate:,.0f} rooms/s", "≥ 100 rooms/s"),
        (
            f"resident memory, one instance, {1000 if quick else 10_000:,} rooms of 10 members",
            f"{rss:.0f} MiB",
            "≤ 150 MB",
        ),
    ]
    lines = latency_table(results, LIMITS)
    lines += ["", "| measurement | result | target |", "|---|---|---|"]
    lines += [f"| {what} | {result} | {target} |" for what, result, target in rows]
    lines += bounded
    lines += scaled
    lines += ["", "| measurement | result | target |", "|---|---|---|"]
    lines += churned
    lines += revoked
    return lines, off


async def part(name: str, rows: Coroutine[Any, Any, list[str]]) -> list[str]:
    """One scenario's rows, timed. A scenario that fails does not end the run: its row says
    it failed and why (the traceback goes to stderr), so one fault costs one figure, not
    the half-hour run's every other one."""
    start = time.monotonic()
    try:
        lines = await rows
    except Exception as exc:
        traceback.print_exc()
        lines = [f"| {name} | failed: {type(exc).__name__}: {exc} | |"]
    print(f"bench: {name} took {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return lines


def fastest_floor(off: dict[str, dict[int, Latency]], limit: int) -> tuple[str, Latency]:
    """The faster of the Python and the Go floor at `limit` (by p50)."""
    floors = [
        (name, off[key][limit]) for name, key in (("Python", "floor"), ("Go", "go floor")) if key in off
    ]
    return min(floors, key=lambda named: named[1].p50)


def go_rows(
    kind: str, off: dict[str, dict[int, Latency]], floor: Latency, target: str
) -> list[tuple[str, str, str]]:
    """The same read from the Go caller, against the same floor."""
    go = off.get(f"go {kind}")
    if go is None:
        return [(f"… {kind}, Go caller", "not measured: no Go toolchain", target)]
    ratio = go[1000].p50 / floor.p50
    return [(f"… {kind}, Go caller / faster floor", f"{fmt_ms(go[1000].p50)} ({ratio:.2f}x)", target)]


def cpu_split(run: sc.Throughput) -> str:
    cpu = run.cpu_us_per_request
    total = sum(cpu.values())
    cores = os.cpu_count() or 1
    return (
        f"{cpu['service']:.0f} / {cpu['nats-server']:.0f} / {cpu['client']:.0f} µs per request;"
        f" {cores} cores / {total:.0f} µs = at most {1e6 * cores / total:,.0f} req/s on this machine"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer runs; for checking the harness")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/ alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="unibus-bench-") as tmp:
        lines, off = asyncio.run(run(Path(tmp), args.quick))
    print("\n".join(lines))
    if args.no_write:
        return
    if plot(off, LIMITS, DOCS / "benchmarks-history.png"):
        lines += ["", "![p50 latency against limit](benchmarks-history.png)"]
    header = [
        "# Benchmarks",
        "",
        f"Measured {datetime.date.today()} on {os.cpu_count()} cores"
        f" ({platform.processor() or platform.machine()},"
        f" Python {platform.python_version()}), one run of `make bench`"
        f"{' --quick' if args.quick else ''}. Medians unless marked.",
        "",
    ]
    analysis = (Path(__file__).parent / "analysis.md").read_text()
    (DOCS / "benchmarks.md").write_text("\n".join([*header, *lines, "", METHOD, "", analysis]))


if __name__ == "__main__":
    main()
