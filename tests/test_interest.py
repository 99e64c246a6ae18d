"""`confirm_interest` is the barrier every "subscribed, now tell the others" relies on
(the service's endpoints, followers' live subscriptions, the connection-events probe)."""

from __future__ import annotations

from pathlib import Path

import nats

from unibus.natsserver import NatsServer, ServerSpec
from unibus.wire.interest import confirm_interest

DENIED = "x.denied"


async def test_the_server_has_seen_every_subscription_once_interest_is_confirmed(tmp_path: Path) -> None:
    """A denied subscription's -ERR must arrive before confirm_interest returns, every time.
    nats-py's plain flush() lets its PING overtake the queued SUB: measured here, the
    violation had arrived in 16 of 50 tries; a probe built on that missed it in CI."""
    spec = ServerSpec(store_dir=tmp_path, jetstream=False)
    spec.extra = (
        'authorization { users = [ {user: "u", password: "p",'
        f' permissions: {{ subscribe: {{ deny: ["{DENIED}"] }} }} }} ] }}'
    )
    server = NatsServer(spec).start()
    try:
        seen = 0
        for _ in range(50):

            async def quiet(_: Exception) -> None:
                pass

            nc = await nats.connect(f"nats://u:p@127.0.0.1:{spec.port}", error_cb=quiet)
            await nc.subscribe(DENIED)
            await confirm_interest(nc)
            seen += DENIED in str(nc.last_error or "")
            await nc.close()
        assert seen == 50
    finally:
        server.stop()
