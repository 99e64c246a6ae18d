"""The processes a benchmark runs against: one nats-server and N service instances, on the
shipped trust boundary (as every shipped configuration runs: peers connect as their own
identity and may touch no JetStream) or on an open server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
from nats.aio.client import Client

from unibus.callout import serverconf
from unibus.callout.keys import BoundaryKeys
from unibus.endpoints import ENDPOINTS
from unibus.identity import Identity
from unibus.natsserver import NatsServer, ServerSpec
from unibus.processes import stop_process
from unibus.wire import connection
from unibus.wire.gather import gather
from unibus.wire.names import INBOXES, SERVICE_NAME


@dataclass
class Stack:
    server: NatsServer
    workdir: Path
    keys: BoundaryKeys | None = None
    """The boundary's keys when the server runs it (None: an open server)."""
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def start_service(self, **env: str) -> subprocess.Popen[bytes]:
        """A real `unibus serve` process, as operators run it."""
        environ = {
            **os.environ,
            "UNIBUS_NATS_URL": self.url,
            "UNIBUS_AUTH_MODE": "enforce",
            # The creation scenario measures capacity, one identity creating as fast as it can.
            "UNIBUS_CREATES_PER_SECOND": "1000000",
            # …and the store that identity's rooms may reserve (1 GiB by default: 64 rooms).
            "UNIBUS_CREATOR_STORE_BYTES": str(1 << 50),
            # Each room stream reserves its byte limit in the store: 16 MiB lets the creation
            # scenario's hundreds of rooms fit a store sized from this machine's free disk.
            "UNIBUS_ROOM_MAX_BYTES": str(16 * 1024 * 1024),
            "UNIBUS_DATA_DIR": str(self.workdir / f"svc{len(self.services)}"),
            **({"UNIBUS_KEYS_DIR": str(self.workdir / "keys")} if self.keys else {}),
            **env,
        }
        log = (self.workdir / f"service{len(self.services)}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "unibus", "serve"],
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.services.append(proc)
        return proc

    async def wait_services(self, nc: Client, count: int, within_s: float = 30.0) -> None:
        """Until `count` instances list every endpoint in $SRV.INFO (one reply per instance;
        an instance answers PING/INFO before its endpoints are subscribed). Asked every
        0.25 s, so a start timed by this is timed to within that: a round waits its whole
        length while fewer than `count` answer, and rounds of 2 s had made bench.scale's
        start times steps of 2 s (2.3 s at 1,000 rooms for a start of under 1 s)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            answers = await gather(nc, f"$SRV.INFO.{SERVICE_NAME}", within_s=0.25, idle_s=0.05, expect=count)
            infos = [json.loads(answer.msg.data) for answer in answers]
            # Under the boundary an instance also lists the callout's endpoint.
            if sum(len(info["endpoints"]) >= len(ENDPOINTS) for info in infos) >= count:
                return
        raise TimeoutError(f"{count} service instances did not come up")

    def stop_service(self, proc: subprocess.Popen[bytes]) -> None:
        stop_process(proc)
        self.services.remove(proc)

    async def peer(self, identity: Identity) -> Client:
        """Connected as `identity`, as a peer connects (under the boundary: through the
        callout, replies under `_INBOX.<its key>`)."""
        opts = connection.options(self.url, name="bench-peer", identity=identity, pending_size=PENDING)
        deadline = time.monotonic() + 30
        while True:  # refused until an instance answers the callout
            try:
                return await connection.connect_once(opts)
            except (nats.errors.Error, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def privileged(self) -> Client:
        """A connection that may use JetStream directly, for the floors and the setup: the
        control plane's own `service` user under the boundary."""
        if self.keys is None:
            return await connect(self.url)
        opts = connection.options(
            self.url, name="bench-jetstream", identity=self.keys.users["service"], inbox=INBOXES["service"]
        )
        return await connection.connect_once({**opts, "pending_size": PENDING})


@contextlib.contextmanager
def stack(workdir: Path, boundary: bool = False) -> Iterator[Stack]:
    spec = ServerSpec(store_dir=workdir / "nats", server_name="bench")
    keys = BoundaryKeys.ensure(workdir / "keys") if boundary else None
    if keys is not None:
        spec.extra = serverconf.render(keys.public())
    server = NatsServer(spec).start()
    st = Stack(server, workdir, keys)
    try:
        yield st
    finally:
        for proc in list(st.services):
            st.stop_service(proc)
        server.stop()


PENDING = 256 * 1024 * 1024


async def connect(url: str) -> Client:
    return await nats.connect(url, pending_size=PENDING)
