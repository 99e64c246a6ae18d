"""Room rows carry a schema version, and instances of two versions share one bucket during
a rolling upgrade: a row without a version is version 1, and a row of a newer version is
served for reading but never rewritten or deleted by an instance that does not know it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from unibus.client import ControlClient, Identity, Unavailable
from unibus.runner import Running
from unibus.storage import Room, SqliteStore
from unibus.storage.rooms import SCHEMA_VERSION, RowTooNew
from unibus.wire.names import ROOM_BUCKET


async def stored_row(nc: Client, room_id: str) -> tuple[dict[str, Any], int]:
    entry = await (await nc.jetstream().key_value(ROOM_BUCKET)).get(room_id)
    return json.loads(entry.value or b""), entry.revision or 0


async def rewrite_row(nc: Client, room_id: str, change: dict[str, object], drop: str | None = None) -> None:
    """Put the row back as another version of the service would have written it."""
    row, _ = await stored_row(nc, room_id)
    row.update(change)
    if drop is not None:
        del row[drop]
    await (await nc.jetstream().key_value(ROOM_BUCKET)).put(room_id, json.dumps(row).encode())


async def test_new_rows_carry_the_schema_version(nc: Client, as_alice: ControlClient) -> None:
    await as_alice.create_room("versioned", encrypted=False)
    row, _ = await stored_row(nc, "versioned")
    assert row["schema"] == SCHEMA_VERSION == 1


async def test_a_row_written_before_versions_is_version_1_and_stays_writable(
    nc: Client, as_alice: ControlClient, bob: Identity, plane: Running
) -> None:
    await as_alice.create_room("old", encrypted=False)
    await rewrite_row(nc, "old", {}, drop="schema")
    await plane.plane.store.catch_up()
    assert (await as_alice.info("old"))["id"] == "old"
    await as_alice.add_member("old", bob.public_key)
    row, _ = await stored_row(nc, "old")
    assert row["schema"] == 1 and bob.public_key in row["members"]


async def test_a_newer_row_is_read_but_never_rewritten_or_deleted(
    nc: Client, as_alice: ControlClient, bob: Identity, plane: Running
) -> None:
    await as_alice.create_room("future", encrypted=False)
    await nc.publish("unibus.room.future", b"frame")
    await rewrite_row(nc, "future", {"schema": SCHEMA_VERSION + 1, "shape": "a field of the next version"})
    before, revision = await stored_row(nc, "future")
    await plane.plane.store.catch_up()

    # Reads keep working from the fields this version knows.
    assert (await as_alice.info("future"))["role"] == "owner"
    assert [r["id"] for r in await as_alice.list_rooms()] == ["future"]
    await as_alice.history("future")
    # Writes are refused with a retryable 503 that says why, and change nothing.
    with pytest.raises(Unavailable, match="newer version of the service"):
        await as_alice.add_member("future", bob.public_key)
    with pytest.raises(Unavailable, match="row schema 2"):
        await as_alice.delete_room("future")
    assert await stored_row(nc, "future") == (before, revision)
    assert (await nc.jetstream().stream_info("UNIBUS_future")).state.messages == 1


async def test_a_delete_checks_the_row_as_stored_not_as_last_seen(
    nc: Client, as_alice: ControlClient, plane: Running
) -> None:
    """A newer instance rewrites the row a moment before this one deletes it, before this
    instance's watch has brought the rewrite in. Pins the store's delete re-checking the
    version of the row it re-read, and deleting only that revision: without it the older
    instance deletes the newer row."""
    await as_alice.create_room("racing", encrypted=False)
    await plane.plane.store.catch_up()
    await rewrite_row(nc, "racing", {"schema": SCHEMA_VERSION + 1})
    with pytest.raises(RowTooNew):
        await plane.plane.store.delete("racing")
    assert (await stored_row(nc, "racing"))[0]["schema"] == SCHEMA_VERSION + 1


async def test_the_sqlite_fallback_follows_the_same_rule(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "rooms.sqlite")
    owner = "U" + "A" * 55
    room = Room(id="r", mode="matrix", subject="unibus.room.r", owner=owner, members={owner: "owner"})
    await store.create(room)
    old = json.loads(room.to_json())
    del old["schema"]
    store._db.execute("UPDATE rooms SET row = ? WHERE id = 'r'", (json.dumps(old).encode(),))
    assert (await store.get("r")).schema == 1
    assert (await store.update("r", lambda r: r)).schema == 1

    newer = {**old, "schema": SCHEMA_VERSION + 1}
    store._db.execute("UPDATE rooms SET row = ? WHERE id = 'r'", (json.dumps(newer).encode(),))
    assert (await store.get("r")).owner == owner
    with pytest.raises(RowTooNew):
        await store.update("r", lambda r: r)
    assert json.loads(store._db.execute("SELECT row FROM rooms").fetchone()[0]) == newer
    await store.close()
