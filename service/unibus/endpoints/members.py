"""Membership and sealed room keys.

For an encrypted room the service only stores sealed keys that clients produce: adding a
member brings the current key sealed to them; removing one brings a new key (epoch + 1)
sealed to everyone who stays, so the removed member cannot read what is sent next.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .. import identity
from ..errors import bad_request, conflict, forbidden, not_found, unauthorized
from ..notices import Notice
from ..storage import Room
from ..storage.rooms import Role
from . import quotas
from .context import Call, Reply, ok, sealed_blob


async def list_members(call: Call) -> Reply:
    room = await call.member_room()
    members = [{"id": key, "role": role} for key, role in sorted(room.members.items())]
    return ok({"room": room.id, "owner": room.owner, "members": members})


async def add(call: Call) -> Reply:
    room = await call.owned_room()
    body = call.json()
    member = _member_key(body)
    await quotas.check_add(call.deps.config, call.deps.store, room, member)
    role: Role = body.get("role", "member")
    if role not in ("member", "owner"):
        raise bad_request("role must be 'member' or 'owner'")

    def mutate(room: Room) -> Room:
        if member in room.members:
            raise conflict("already a member")
        if len(room.members) >= call.deps.config.max_members_per_room:  # a concurrent add won
            raise forbidden(f"the room is full: at most {call.deps.config.max_members_per_room} members")
        sealed = dict(room.sealed_keys)
        if room.encrypted:
            blob = sealed_blob(body.get("sealed_key"), "sealed_key")
            sealed[member] = {str(room.key_epoch): blob}
        return replace(room, members={**room.members, member: role}, sealed_keys=sealed)

    updated = await _update(call, mutate)
    call.notices.append(Notice(member, "granted", updated.id))
    return ok(_summary(updated))


async def remove(call: Call) -> Reply:
    room = await call.room()
    body = call.json()
    member = _member_key(body)
    signer = call.caller.signer
    leaving_self = signer == member
    if not (call.caller.anonymous or room.is_owner(signer) or (leaving_self and room.is_member(signer))):
        raise forbidden("only the owner may remove others")
    if leaving_self and body.get("sealed_keys") is not None:
        # Whoever leaves must not pick the key the others go on with (they would read it).
        raise bad_request("a member leaving cannot choose the next key: leave without sealed_keys")

    def mutate(room: Room) -> Room:
        if member not in room.members:
            raise not_found("not a member")
        if member == room.owner:
            raise conflict("the room's creator cannot be removed; delete the room instead")
        members = {k: v for k, v in room.members.items() if k != member}
        sealed = {k: v for k, v in room.sealed_keys.items() if k != member}
        changed = replace(room, members=members, sealed_keys=sealed)
        if room.encrypted and not leaving_self:
            changed = _rotated(changed, body.get("sealed_keys"))
        return changed

    updated = await _update(call, mutate)
    call.notices.append(Notice(member, "revoked", updated.id))
    return ok(_summary(updated))


async def rotate(call: Call) -> Reply:
    """A new key epoch sealed to every member (e.g. after a member left on its own)."""
    await call.owned_room()
    body = call.json()

    def mutate(room: Room) -> Room:
        if not room.encrypted:
            raise bad_request("the room is not encrypted")
        return _rotated(room, body.get("sealed_keys"))

    return ok(_summary(await _update(call, mutate)))


async def sealed_keys(call: Call) -> Reply:
    room = await call.member_room()
    if call.caller.signer is None:
        raise unauthorized("sealed keys are only given to a signed request")
    keys = room.sealed_keys.get(call.caller.signer, {})
    return ok({"room": room.id, "epoch": room.key_epoch, "keys": keys})


def _rotated(room: Room, new_keys: Any) -> Room:
    if not isinstance(new_keys, dict) or set(new_keys) != set(room.members):
        raise bad_request("sealed_keys must hold a new sealed key for every remaining member, and only them")
    epoch = room.key_epoch + 1
    sealed = {
        m: {**room.sealed_keys.get(m, {}), str(epoch): sealed_blob(b, "sealed_keys")}
        for m, b in new_keys.items()
    }
    return replace(room, key_epoch=epoch, sealed_keys=sealed)


def _member_key(body: dict[str, Any]) -> str:
    member = body.get("member")
    if not identity.is_public_key(member):
        raise bad_request("member must be an nkey user public key (U…)")
    assert isinstance(member, str)
    return member


async def _update(call: Call, mutate: Any) -> Room:
    assert call.room_id is not None
    room = await call.deps.store.update(call.room_id, mutate)
    if room is None:
        raise not_found()
    return room


def _summary(room: Room) -> dict[str, Any]:
    return {
        "room": room.id,
        "key_epoch": room.key_epoch,
        "members": [{"id": k, "role": v} for k, v in sorted(room.members.items())],
    }
