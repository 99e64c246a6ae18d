"""`python -m bench.ab OTHER_SERVICE_DIR [rounds] [seconds]`: CPU per warm request of two
service trees, alternated on one nats-server.

On a shared machine one run each, minutes apart, compares the load of those minutes more
than the code. This runs the throughput row's load (32 closed-loop callers of warm
history(limit=50) on the shipped trust boundary, one instance) against an instance of this
tree and one started with `PYTHONPATH=OTHER_SERVICE_DIR` (for example
`git archive main service | tar -x -C /tmp/main` and `/tmp/main/service`), taking turns,
and prints each run and the medians. CPU time is read from /proc, as in the throughput row.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from unibus.client import ControlClient, Identity

from . import scenarios as sc
from .stack import stack


async def compare(workdir: Path, other: str, rounds: int, seconds: float) -> None:
    trees = {"other": {"PYTHONPATH": other}, "this": {}}
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
    with stack(workdir, boundary=True) as st:
        owner = Identity.generate()
        service = st.start_service(**trees["other"])
        nc = await st.peer(owner)
        await st.wait_services(nc, 1)
        js_nc = await st.privileged()
        client = ControlClient(nc, owner)
        await sc.seed_room(client, js_nc, "bench")
        st.stop_service(service)
        for _ in range(rounds):
            for name, env in trees.items():
                service = st.start_service(**env)
                await st.wait_services(nc, 1)
                await sc.throughput(st, client, "bench", 50, 32, 1.5)  # the room into the cache
                run = await sc.throughput(st, client, "bench", 50, 32, seconds)
                st.stop_service(service)
                cpu = run.cpu_us_per_request
                runs[name].append((cpu["service"], cpu["nats-server"], run.rps))
                print(
                    f"{name:>5}: {run.rps:6,.0f} req/s; CPU per request: service {cpu['service']:4.0f} µs,"
                    f" nats-server {cpu['nats-server']:4.0f} µs, client {cpu['client']:4.0f} µs",
                    flush=True,
                )
        await nc.close()
        await js_nc.close()
    for name, measured in runs.items():
        service_us, server_us, rps = (statistics.median(column) for column in zip(*measured, strict=True))
        print(
            f"{name:>5}: median service {service_us:.0f} µs, nats-server {server_us:.0f} µs, {rps:,.0f} req/s"
        )


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    with tempfile.TemporaryDirectory(prefix="unibus-ab-") as tmp:
        asyncio.run(compare(Path(tmp), sys.argv[1], rounds, seconds))


if __name__ == "__main__":
    main()
