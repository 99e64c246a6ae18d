"""What the per-identity connection limit costs a connect (docs/security.md, "Admission
model"): connect time through the auth callout with the limit's check and with the check
replaced by a no-op, interleaved in one process against one nats-server running the
trust boundary, while `background` connections of other identities are open (200 unless
given), for an identity that holds `HELD` connections and for a fresh identity each time
(`python -m bench.connection_limit [background]`). Both are a lookup in counts kept from
the servers' connect events; the one pass over the account's connections at start is
the revoker's kind, timed by it."""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from unibus.callout import serverconf
from unibus.callout.authorizer import Authorizer
from unibus.callout.keys import BoundaryKeys
from unibus.config import Config
from unibus.identity import Identity
from unibus.natsserver import NatsServer, ServerSpec
from unibus.runner import running
from unibus.wire import connection

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

            times: dict[tuple[str, str], list[float]] = {
                (kind, name): [] for kind in ("known", "fresh") for name in ("checked", "unchecked")
            }
            for _ in range(ROUNDS):
                for name, check in (("checked", real), ("unchecked", unchecked)):
                    Authorizer._below_connection_limit = check  # type: ignore[method-assign]
                    for kind in ("known", "fresh"):
                        for _ in range(PER_ROUND):
                            identity = who if kind == "known" else Identity.generate()
                            started = time.perf_counter()
                            nc = await connect(server.url, identity)
                            times[kind, name].append((time.perf_counter() - started) * 1000)
                            await nc.close()  # type: ignore[attr-defined]
            Authorizer._below_connection_limit = real  # type: ignore[method-assign]
            for nc in [*held, *others]:
                await nc.close()  # type: ignore[attr-defined]
    finally:
        server.stop()
    print(
        f"connect through the callout, {background} other connections open,"
        f" {ROUNDS * PER_ROUND} connects each way interleaved:"
    )
    for kind in ("known", "fresh"):
        p50 = {name: statistics.median(times[kind, name]) for name in ("checked", "unchecked")}
        for name in ("checked", "unchecked"):
            p99 = statistics.quantiles(times[kind, name], n=100)[98]
            print(f"  {kind} identity, {name:9s} p50 {p50[name]:.2f} ms  p99 {p99:.2f} ms")
        extra = p50["checked"] - p50["unchecked"]
        print(f"  {kind} identity: the limit's check {extra:+.2f} ms a connect (p50)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="unibus-bench-connlimit-") as tmp:
        asyncio.run(main(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 200))
