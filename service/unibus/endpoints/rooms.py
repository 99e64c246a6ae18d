"""Room lifecycle: create, list, info, delete."""

from __future__ import annotations

import logging
import time

import nats.js.errors as jserr

from .. import identity
from ..errors import bad_request, conflict, insufficient_storage, not_found, unavailable
from ..notices import Notice
from ..storage import Room, RoomExists
from ..storage.rooms import MODES
from ..streams import StreamTaken, delete_room_stream, ensure_room_stream
from ..wire.ids import ROOM_ID_RULE, is_room_id, new_room_id
from ..wire.jscodes import JSStorageResourcesExceededErr
from . import quotas
from .context import Call, Reply, ok, sealed_blob

log = logging.getLogger(__name__)

_MAX_NAME = 200


async def create(call: Call) -> Reply:
    room = _new_room(call)
    with call.deps.underway.hold(room):
        stored = await _create(call, room)
    call.notices.extend(Notice(m, "granted", stored.id) for m in stored.members)
    return ok(stored.public())


async def _create(call: Call, room: Room) -> Room:
    deps = call.deps
    reserves = room.persisted and deps.js is not None
    await quotas.check_create(
        deps.config, deps.store, deps.creations, room, call.caller.signer, reserves, deps.underway
    )
    if await deps.store.get(room.id) is not None:
        raise conflict("room already exists")
    if reserves and deps.js is not None:
        # The stream comes first, so the subject is captured from the very first
        # message whoever publishes it, and a stream failure leaves no room behind.
        try:
            await ensure_room_stream(deps.js, room, deps.streams, deps.config.js_timeout_s)
        except StreamTaken:
            raise  # 409, app.py
        except jserr.APIError as err:
            if err.err_code != JSStorageResourcesExceededErr:
                log.warning("room %s: stream not ensured: %r", room.id, err)
                raise unavailable("could not create the room's stream; nothing was created") from None
            raise insufficient_storage(
                "the JetStream store cannot reserve a new room's stream; nothing was created"
            ) from None
        except Exception as exc:
            log.warning("room %s: stream not ensured: %r", room.id, exc)
            raise unavailable("could not create the room's stream; nothing was created") from None
    try:
        return await deps.store.create(room)
    except RoomExists:
        raise conflict("room already exists") from None


def _new_room(call: Call) -> Room:
    body = call.json()
    room_id = body.get("id")
    if room_id is None:
        room_id = new_room_id()
    if not is_room_id(room_id):
        raise bad_request(f"id must be {ROOM_ID_RULE}")
    mode = body.get("mode", "matrix")
    if mode not in MODES:
        raise bad_request("mode must be 'matrix' or 'ephemeral'")
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > _MAX_NAME:
        raise bad_request(f"name must be a string of at most {_MAX_NAME} characters")
    encrypted = body.get("encrypted", False)
    if not isinstance(encrypted, bool):
        raise bad_request("encrypted must be true or false")
    owner = call.caller.signer
    if owner is None:
        owner = body.get("owner")
        if not isinstance(owner, str) or not identity.is_public_key(owner):
            raise bad_request("an unsigned create must name its owner (an nkey user public key)")
    sealed: dict[str, dict[str, str]] = {}
    if encrypted:
        sealed = {owner: {"1": sealed_blob(body.get("sealed_key"), "sealed_key")}}
    return Room(
        id=room_id,
        mode=mode,
        subject=f"{call.deps.config.room_subject_prefix}.{room_id}",
        owner=owner,
        members={owner: "owner"},
        encrypted=encrypted,
        key_epoch=1 if encrypted else 0,
        sealed_keys=sealed,
        name=name,
        created_at_ms=int(time.time() * 1000),
    )


async def list_rooms(call: Call) -> Reply:
    await call.deps.store.catch_up()
    rooms = await call.deps.store.rooms_of(call.caller.signer)
    return ok({"rooms": [room.public() for room in rooms]})


async def info(call: Call) -> Reply:
    room = await call.member_room()
    return ok({**room.public(), "role": room.members.get(call.caller.signer or "")})


async def delete(call: Call) -> Reply:
    room = await call.owned_room()
    room.check_writable()  # a row of a newer version is left to an instance that knows it
    deps = call.deps
    if deps.js is not None:
        # Stream before row: a half-done delete leaves a room that can be deleted again,
        # never an orphan stream that a new room of the same id would adopt.
        try:
            await delete_room_stream(deps.js, room.stream, deps.config.js_timeout_s)
        except Exception as exc:
            log.warning("room %s: stream not deleted: %r", room.id, exc)
            raise unavailable("could not delete the room's stream; the room is unchanged") from None
    if not await deps.store.delete(room.id):
        raise not_found()
    call.notices.extend(Notice(m, "revoked", room.id) for m in room.members)
    return ok({"deleted": room.id})
