"""A steady-rate (open-loop) load generator: operations start on a fixed schedule whether
or not earlier ones finished, so a stall shows up as latency instead of a slower rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def percentile_ms(self, p: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else 0.0

    def summary(self) -> str:
        n = len(self.latencies_s)
        return (
            f"{n} ok, {len(self.errors)} errors in {self.duration_s:.1f} s ({n / self.duration_s:.1f}/s); "
            f"latency p50 {self.percentile_ms(50):.1f} ms, p90 {self.percentile_ms(90):.1f} ms, "
            f"p99 {self.percentile_ms(99):.1f} ms, max {self.percentile_ms(100):.1f} ms"
        )


async def steady(
    rate_per_s: float,
    duration_s: float,
    op: Callable[[int], Awaitable[object]],
    drain_s: float = 60.0,
    until: asyncio.Event | None = None,
) -> LoadResult:
    """Start `op(i)` every 1/rate seconds for `duration_s`, or until `until` is set if
    that comes first (a load that lasts as long as a fault does); wait (bounded) for
    stragglers."""
    result = LoadResult()
    tasks: list[asyncio.Task[None]] = []

    async def timed(i: int) -> None:
        start = time.perf_counter()
        try:
            await op(i)
        except Exception as exc:
            result.errors.append(f"op {i}: {exc!r}")
        else:
            result.latencies_s.append(time.perf_counter() - start)

    begin = time.perf_counter()
    total = int(rate_per_s * duration_s)
    for i in range(total):
        if until is not None and until.is_set():
            break
        delay = begin + i / rate_per_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(i)))
    _, pending = await asyncio.wait(tasks, timeout=drain_s)
    for task in pending:
        task.cancel()
        result.errors.append("op still running after the drain bound")
    result.duration_s = time.perf_counter() - begin
    return result
