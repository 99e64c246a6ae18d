"""`python -m bench` (`make bench`): every measurement in one run, printed and written to
docs/benchmarks.md with the machine's core count, the date and the command."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import tempfile
from pathlib import Path

from unibus.client import ControlClient, Identity

from . import boundary, follow_churn, revocation, scale
from . import scenarios as sc
from .measure import Latency
from .report import METHOD, fmt_ms, latency_table, plot
from .stack import Stack, connect, stack

LIMITS = [10, 50, 100, 200, 500, 1000]
DOCS = Path(__file__).resolve().parent.parent / "docs"


async def run(st: Stack, quick: bool) -> tuple[list[str], dict[str, dict[int, Latency]]]:
    runs = 30 if quick else 200
    seconds = 2.0 if quick else 10.0
    # Round one's path first: no frame cache, every page from JetStream.
    uncached = st.start_service(UNIBUS_HISTORY_CACHE_BYTES="0")
    nc = await connect(st.url)
    await st.wait_services(nc, 1)
    owner = Identity.generate()
    client = ControlClient(nc, owner)
    stream = await sc.seed_room(client, nc, "bench")

    results = {}
    for allow_direct in (False, True):
        await sc.set_allow_direct(nc, stream, allow_direct)
        results["on" if allow_direct else "off"] = await sc.history_latencies(
            client, nc, "bench", stream, LIMITS, runs
        )
    await sc.set_allow_direct(nc, stream, False)
    before = await sc.throughput(st, client, "bench", 50, 32, seconds)
    st.stop_service(uncached)

    # Cold: the cache on but too small to keep anything, so every read misses and pays
    # for trying. Warm: the default cache, the room's frames already in it.
    cold = st.start_service(UNIBUS_HISTORY_CACHE_BYTES="1")
    await st.wait_services(nc, 1)
    off = results["off"]
    off["cold"] = await sc.service_latencies(client, "bench", LIMITS, runs)
    st.stop_service(cold)
    st.start_service()
    await st.wait_services(nc, 1)
    off["warm"] = await sc.service_latencies(client, "bench", LIMITS, runs)

    one = await sc.throughput(st, client, "bench", 50, 32, seconds)
    alone, loaded = await sc.interference(st, client, "bench", runs)
    st.start_service()
    await st.wait_services(nc, 2)
    two = await sc.throughput(st, client, "bench", 50, 32, seconds)
    alone2, loaded2 = await sc.interference(st, client, "bench", runs)

    revoke = await sc.revocation_delay(st, owner, 20 if quick else 100)
    create_rate = await sc.creation_rate(client, 100 if quick else 500, 16)
    rss = await sc.resident_memory(st, 1000 if quick else 10_000, 10)
    await nc.close()
    bounded = await boundary.measure(st.workdir, quick)
    scaled = await scale.measure(st.workdir, quick)
    churned = await follow_churn.measure(st.workdir, quick)
    revoked = await revocation.measure(st.workdir, quick)

    w1000, s1000, c1000 = off["warm"][1000], off["service"][1000], off["cold"][1000]
    b1000, f1000 = off["baseline"][1000], off["floor"][1000]
    cpu, cpu0 = one.cpu_us_per_request, before.cpu_us_per_request
    rows = [
        (
            "warm history(limit=1000) p50 / raw floor p50",
            f"{fmt_ms(w1000.p50)} / {fmt_ms(f1000.p50)} ({w1000.p50 / f1000.p50:.2f}x)",
            "≤ 1x",
        ),
        ("… vs original algorithm", f"{b1000.p50 / w1000.p50:.1f}x faster", "≥ 30x"),
        (
            "cold history(limit=1000) p50, cache missing / no cache",
            f"{fmt_ms(c1000.p50)} / {fmt_ms(s1000.p50)}",
            "no slower",
        ),
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
            "",
        ),
        ("… CPU per request, 1 instance warm: service / nats-server / client", cpu_split(one), ""),
        ("… CPU per request, 1 instance no cache: service / nats-server / client", cpu_split(before), ""),
        ("… CPU per request, 2 instances warm: services / nats-server / client", cpu_split(two), ""),
        (
            "history(limit=10) p50 alone / beside a limit=1000 in flight, 1 instance",
            f"{fmt_ms(alone.p50)} / {fmt_ms(loaded.p50)} (+{loaded.p50 - alone.p50:.2f} ms)",
            "≤ +5 ms",
        ),
        (
            "… the same with 2 instances in the queue group",
            f"{fmt_ms(alone2.p50)} / {fmt_ms(loaded2.p50)} (+{loaded2.p50 - alone2.p50:.2f} ms)",
            "≤ +5 ms",
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
    lines += churned
    lines += revoked
    return lines, off


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
    with tempfile.TemporaryDirectory(prefix="unibus-bench-") as tmp, stack(Path(tmp)) as st:
        lines, off = asyncio.run(run(st, args.quick))
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
