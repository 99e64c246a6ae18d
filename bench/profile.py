"""`python -m bench.profile [seconds]`: where a warm instance spends its CPU.

The same load as the benchmark's throughput row (32 closed-loop callers of warm
history(limit=50) on the shipped trust boundary, one instance), with py-spy sampling the
`unibus serve` process. Prints the CPU per request of the service and nats-server (from
/proc, so a loaded machine changes the rate but not the cost) and py-spy's top functions;
writes the raw profile beside them for a flame graph. py-spy is not a dependency of the
project: `pip install py-spy` first.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from unibus.client import ControlClient, Identity

from . import scenarios as sc
from .stack import stack


async def profile(workdir: Path, seconds: float, out: Path) -> None:
    with stack(workdir, boundary=True) as st:
        owner = Identity.generate()
        service = st.start_service()
        nc = await st.peer(owner)
        await st.wait_services(nc, 1)
        js_nc = await st.privileged()
        client = ControlClient(nc, owner)
        await sc.seed_room(client, js_nc, "bench")
        await sc.throughput(st, client, "bench", 50, 32, 2.0)  # the room into the cache
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        args = [
            "record",
            "-r",
            "400",
            "-f",
            "raw",
            "-o",
            str(out),
            "-p",
            str(service.pid),
            "-d",
            str(int(seconds)),
        ]
        recorder = await asyncio.create_subprocess_exec(
            spy, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        run = await sc.throughput(st, client, "bench", 50, 32, seconds)
        await recorder.wait()
        cpu = run.cpu_us_per_request
        print(
            f"{run.rps:,.0f} req/s; CPU per request: service {cpu['service']:.0f} µs,"
            f" nats-server {cpu['nats-server']:.0f} µs, client {cpu['client']:.0f} µs"
        )
        await nc.close()
        await js_nc.close()


def top(raw: Path, count: int = 25) -> list[str]:
    """Inclusive share of samples per function, from py-spy's raw (collapsed) output."""
    total = 0
    inclusive: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack_text, _, samples = line.rpartition(" ")
        n = int(samples)
        total += n
        for frame in set(stack_text.split(";")):
            inclusive[frame] = inclusive.get(frame, 0) + n
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:count]
    return [f"{100 * n / total:5.1f} %  {frame}" for frame, n in ranked]


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("profile.txt")
    with tempfile.TemporaryDirectory(prefix="unibus-profile-") as tmp:
        asyncio.run(profile(Path(tmp), seconds, out))
    print("\n".join(top(out)))


if __name__ == "__main__":
    main()
