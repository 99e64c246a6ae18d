"""The largest grant the callout issues: an identity in as many rooms as one may be in
(`max_rooms_per_member`), every room persisted and its id 64 characters long. Reported: the
size of its user JWT and of the callout's answer that carries it (nats-server's
`max_payload`, 1 MiB by default, bounds the answer), and its connect time through the
callout against an identity in no room. tests/test_boundary.py checks that nats-server
admits it with every room.

`python -m bench.largest_grant` prints its rows; `make bench` includes them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import time
from pathlib import Path

import nkeys

from unibus.callout import jwt
from unibus.callout.authorizer import Authorizer
from unibus.config import Config
from unibus.identity import Identity
from unibus.storage import Room
from unibus.wire import connection
from unibus.wire.names import ROOM_BUCKET

from .measure import Latency
from .report import fmt_ms
from .stack import Stack, stack


def rooms_for(member: str, count: int) -> list[Room]:
    owner = Identity.generate().public_key
    ids = [f"{i:05d}".ljust(64, "q") for i in range(count)]
    return [Room(i, "matrix", f"unibus.room.{i}", owner, {owner: "owner", member: "member"}) for i in ids]


async def answer_sizes(member: Identity, rooms: list[Room]) -> tuple[int, int]:
    """(user JWT, callout answer) bytes, from the service's own Authorizer answering a
    request shaped and signed as nats-server signs one."""
    server = nkeys.from_seed(nkeys.encode_seed(b"s" * 32, nkeys.PREFIX_BYTE_SERVER))
    issuer = nkeys.from_seed(nkeys.encode_seed(b"i" * 32, nkeys.PREFIX_BYTE_ACCOUNT))
    user_nkey = nkeys.from_seed(nkeys.encode_seed(b"u" * 32, nkeys.PREFIX_BYTE_USER)).public_key.decode()
    nonce = "bench-nonce"
    signature = base64.urlsafe_b64encode(member.signing_key.sign(nonce.encode()).signature).decode()
    request = {
        "sub": user_nkey,
        "exp": int(time.time()) + 60,
        "nats": {
            "type": "authorization_request",
            "version": 2,
            "server_id": {"id": server.public_key.decode(), "name": "bench"},
            "user_nkey": user_nkey,
            "client_info": {"host": "127.0.0.1", "kind": "Client", "type": "nats", "nonce": nonce},
            "connect_opts": {"name": "bench", "nkey": member.public_key, "sig": signature},
        },
    }

    async def rooms_of(_: str) -> list[Room]:
        return rooms

    config = Config()
    authorizer = Authorizer(
        issuer=issuer,
        rooms_of=rooms_of,
        api_prefix=config.api_prefix,
        room_subject_prefix=config.room_subject_prefix,
        allow_anonymous=False,
        ttl_s=config.callout_ttl_s,
    )
    answer, decision = await authorizer.answer(jwt.encode(request, server).encode())
    assert answer is not None and decision == "member", decision
    user_jwt = json.loads(base64.urlsafe_b64decode(answer.split(b".")[1] + b"=="))["nats"]["jwt"]
    return len(user_jwt), len(answer)


async def connect_times(st: Stack, identity: Identity, runs: int) -> Latency:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        nc = await connection.connect_once(connection.options(st.url, name="bench", identity=identity))
        samples.append((time.perf_counter() - start) * 1000)
        await nc.close()
    return Latency(samples)


async def measure(workdir: Path, quick: bool) -> list[str]:
    runs = 10 if quick else 40
    quota = Config().max_rooms_per_member
    member = Identity.generate()
    rooms = rooms_for(member.public_key, quota)
    user_jwt, answer = await answer_sizes(member, rooms)
    with stack(workdir / "largest-grant", boundary=True) as st:
        st.start_service()
        nc = await st.peer(Identity.generate())
        await st.wait_services(nc, 1)
        await nc.close()
        service = await st.privileged()
        bucket = await service.jetstream().key_value(ROOM_BUCKET)
        for start in range(0, quota, 100):
            await asyncio.gather(*(bucket.put(r.id, r.to_json()) for r in rooms[start : start + 100]))
        await service.close()
        largest = await connect_times(st, member, runs)
        empty = await connect_times(st, Identity.generate(), runs)
    return [
        f"| identity at the member quota ({quota:,} persisted rooms, 64-character ids): user JWT /"
        f" callout answer size | {user_jwt / 1024:,.0f} KiB / {answer / 1024:,.0f} KiB (nats-server's"
        " max_payload: 1,024 KiB) | admitted (tests/test_boundary.py) |",
        f"| … its connect through the callout, p50 / p99 (an identity in no room: p50 / p99) |"
        f" {fmt_ms(largest.p50)} / {fmt_ms(largest.p99)} ({fmt_ms(empty.p50)} / {fmt_ms(empty.p99)}) | |",
    ]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="unibus-bench-grant-") as tmp:
        print("\n".join(asyncio.run(measure(Path(tmp), quick=False))))


if __name__ == "__main__":
    main()
