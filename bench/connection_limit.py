"""What the per-identity connection limit costs a connect (docs/security.md, "Admission
model"): connect time through the auth callout with the limit's check (one CONNZ request
to every server, filtered by the identity) and with the check replaced by a no-op,
interleaved in one process against one nats-server running the trust boundary, while
`background` connections of other identities are open (200 unless given) and the measured
identity already holds `HELD` (`python -m bench.connection_limit [background]`)."""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from unibus import connection
from unibus.callout import serverconf
from unibus.callout.authorizer import Authorizer
from unibus.callout.keys import BoundaryKeys
from unibus.config import Config
from unibus.identity import Identity
from unibus.natsserver import NatsServer, ServerSpec
from unibus.runner import running

HELD = 10
ROUNDS = 10
PER_ROUND = 40


async def connect(url: str, who: Identity) -> object:
    return await connection.connect_once(connection.options(url, name="bench", identity=who))


async def main(tmp: Path, background: int) -> None:
    keys = BoundaryKeys.ensure(tmp / "keys")
    spec = ServerSpec(store_dir=tmp / "nats", server_name="bench-connlimit")
    spec.extra = serverconf.render(keys.public())
    server = NatsServer(spec).start()
    try:
        config = Config(nats_url=server.url, keys_dir=str(tmp / "keys"), data_dir=str(tmp / "data"))
        async with running(config):
            others = [await connect(server.url, Identity.generate()) for _ in range(background)]
            who = Identity.generate()
            held = [await connect(server.url, who) for _ in range(HELD)]
            real = Authorizer._below_connection_limit

            async def unchecked(self: Authorizer, who: str) -> None:
                return None

            times: dict[str, list[float]] = {"checked": [], "unchecked": []}
            for _ in range(ROUNDS):
                for name, check in (("checked", real), ("unchecked", unchecked)):
                    Authorizer._below_connection_limit = check  # type: ignore[method-assign]
                    for _ in range(PER_ROUND):
                        started = time.perf_counter()
                        nc = await connect(server.url, who)
                        times[name].append((time.perf_counter() - started) * 1000)
                        await nc.close()  # type: ignore[attr-defined]
            Authorizer._below_connection_limit = real  # type: ignore[method-assign]
            for nc in [*held, *others]:
                await nc.close()  # type: ignore[attr-defined]
    finally:
        server.stop()
    p50 = {name: statistics.median(samples) for name, samples in times.items()}
    print(
        f"connect through the callout, {background} other connections open, the identity holding"
        f" {HELD}, {ROUNDS * PER_ROUND} connects each way interleaved:"
    )
    for name, samples in times.items():
        p99 = statistics.quantiles(samples, n=100)[98]
        print(f"  {name:9s} p50 {p50[name]:.2f} ms  p99 {p99:.2f} ms")
    print(f"  the limit's check: +{p50['checked'] - p50['unchecked']:.2f} ms a connect (p50)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="unibus-bench-connlimit-") as tmp:
        asyncio.run(main(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 200))
