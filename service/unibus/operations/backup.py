"""Online backup and restore of a deployment's JetStream state, with what the project installs.

A backup is the room bucket (`KV_<bucket>`) and the stream of every persisted room it
holds, each saved as JetStream's own stream snapshot (`$JS.API.STREAM.SNAPSHOT`): the
server streams the stream's files in chunks to a subject of ours and waits for an ack per
chunk. A restore (`$JS.API.STREAM.RESTORE`) sends them back and the server rebuilds the
stream as it was: every message at its sequence, deleted gaps and purges included, so
history pages and their `first_seq` answer exactly as before. The service keeps running
while a backup is taken; each stream is saved at one point in time, the streams one
after another (docs/operations.md says what that means for rooms changed meanwhile).

The nonce stream is not saved: its ids expire after two clock-skew windows, and what a
backup holds is older than what the lost stream held. Instead a restore marks the nonce
stream (`RESTORED_MARK`), and the replay guard then refuses every request signed before
the restore could have been made, so no request accepted before the loss is accepted
twice (auth/replay.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

import nats.errors
import nats.js.errors as jserr
from nats.aio.client import Client
from nats.js.kv import KV_DEL, KV_PURGE

from ..auth.replay import RESTORED_MARK, nonce_stream_config
from ..config import Config
from ..storage.rooms import Room
from ..wire import jsapi
from ..wire.ids import is_room_id
from ..wire.jscodes import JSStreamNameExistErr, JSStreamNameExistRestoreFailedErr, JSStreamNotFoundErr
from ..wire.names import (
    ROOM_STREAM_PREFIX,
    bucket_name,
    nonce_stream_name,
    ping_subject,
    stored_subject,
    stream_name,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
"""Version of the backup directory's layout (the manifest and one file per stream)."""
_CHUNK = 128 * 1024
_ROOM_SETTINGS = {"no_ack": True, "allow_rollup_hdrs": False, "sealed": False}
"""Room stream settings as streams.py makes them, each of which a member's publish could
turn otherwise: without no_ack JetStream publishes an ack, unchecked, to the reply subject
the member chose (a row of the bucket); with rollups one frame carrying `Nats-Rollup: all`
wipes the room's history (measured); a sealed stream takes no frame."""
_FORWARDING = ("sources", "mirror", "republish", "subject_transform")
"""Stream settings the service never makes: each moves messages into a stream from others,
or out of it to any subject, from inside the account and past every permission (a room's
frames republished as rows of the bucket, another room's frames sourced into a member's
room)."""


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""

    def __init__(self, message: str, err_code: int | None = None) -> None:
        super().__init__(message)
        self.err_code = err_code
        """JetStream's code, where JetStream refused."""


@dataclass(frozen=True)
class Saved:
    """One stream in a backup: its snapshot file and what the server said it held."""

    stream: str
    file: str
    bytes: int
    sha256: str
    messages: int
    config: dict[str, Any]
    state: dict[str, Any]


async def backup(nc: Client, directory: Path, api_prefix: str, timeout_s: float) -> list[Saved]:
    """Save the bucket, then each persisted room's stream, into `directory` (see
    `new_directory`). Snapshot chunks are delivered to inboxes of `nc`."""
    bucket = bucket_name(api_prefix)
    saved = [await _snapshot(nc, f"KV_{bucket}", directory, timeout_s)]
    for room_id in await _persisted_rooms(nc, bucket, timeout_s):
        try:
            saved.append(await _snapshot(nc, stream_name(room_id), directory, timeout_s))
        except _StreamGone:
            # Deleted since the bucket was saved: its row is in the backup, its frames are not.
            log.warning("room %s: stream deleted during the backup; its row is saved without frames", room_id)
    manifest = {"format": FORMAT, "api_prefix": api_prefix, "created_ms": _now_ms(), "streams": saved}
    with _new_file(directory / MANIFEST, "w") as out:
        out.write(json.dumps(manifest, default=asdict, indent=1))
    return saved


def new_directory(directory: Path) -> None:
    """Create `directory` for a backup, refusing one that holds anything already. Only
    its owner may read it: it holds every room's frames and members."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise BackupError(f"{directory} is not empty: back up into a new directory")
    status = directory.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o022:
        # Whoever else may write in it can swap a snapshot or the manifest before a restore,
        # or plant a link where the manifest is written.
        raise BackupError(f"{directory} is writable by others: back up into a directory only you can write")


async def restore(
    nc: Client, directory: Path, config: Config, timeout_s: float, replicas: int | None = None
) -> list[Saved]:
    """Recreate every stream of the backup in `directory`, refusing (before any change)
    if one of them exists already (a restore never merges into or replaces live state),
    while another restore holds the lock, or while an instance of the service runs.

    Room streams go first and the bucket last, so no row appears before its frames; a
    failure part-way deletes the streams it made so far.
    `replicas` overrides the saved replication (a backup of a cluster restored on one
    server, say)."""
    manifest = _read_manifest(directory)
    api_prefix = manifest["api_prefix"]
    if api_prefix != config.api_prefix:
        raise BackupError(f"the backup is of control prefix {api_prefix!r}, not {config.api_prefix!r}")
    saved = [Saved(**entry) for entry in manifest["streams"]]
    bucket = f"KV_{bucket_name(api_prefix)}"
    names = [entry.stream for entry in saved]
    if names.count(bucket) != 1 or len(set(names)) != len(names):
        # A stream named twice would be refused by the server the second time, as made by
        # someone else, and the rollback would leave the first one standing.
        raise BackupError(f"{directory / MANIFEST}: not each stream once, the bucket {bucket} among them")
    for entry in saved:
        _verify(directory, entry, config)
    async with _one_restore_at_a_time(nc, api_prefix, timeout_s):
        existing = [entry.stream for entry in saved if await _stream_exists(nc, entry.stream, timeout_s)]
        if existing:
            raise BackupError(
                f"refusing to restore: {len(existing)} stream(s) already exist ({', '.join(existing[:5])}"
                f"{', …' if len(existing) > 5 else ''}); restore into a JetStream without them"
            )
        await _no_instance_running(nc, config.service_name, timeout_s)
        # Stamped before the first stream, not after the last: a restore killed once the
        # bucket is back would otherwise leave rows and no stamp, and the replay hole open.
        saved_replicas = next(entry.config.get("num_replicas") for entry in saved if entry.stream == bucket)
        await _mark_nonces(nc, config, replicas or saved_replicas or 1, timeout_s)
        begun: list[str] = []
        try:
            for entry in sorted(saved, key=lambda entry: entry.stream == bucket):
                begun.append(entry.stream)
                await _restore_stream(nc, directory, entry, replicas, timeout_s)
        except BaseException as exc:
            if isinstance(exc, _NameTaken):
                begun.pop()  # made by someone else meanwhile (an instance's bucket): not ours
            # All or nothing: what was made is removed, so the restore can be run again.
            for stream in begun:
                with contextlib.suppress(_StreamGone):
                    await _api(nc, f"STREAM.DELETE.{stream}", None, timeout_s)
            raise
    return saved


def restore_lock_name(api_prefix: str) -> str:
    """The stream that exists while a restore of the prefix's deployment runs."""
    return f"UNIBUS-RESTORING-{hashlib.sha256(api_prefix.encode()).hexdigest()[:12]}"


@contextlib.asynccontextmanager
async def _one_restore_at_a_time(nc: Client, api_prefix: str, timeout_s: float) -> AsyncIterator[None]:
    """Hold the restore lock: a stream whose create fails for every other holder (its
    config carries a token of ours, and JetStream refuses a create of a name in use
    with another config). Two restores at once each pass the check that no stream
    exists, then nats-server's own restore of one stream name removes the other's files
    (measured: both fail, `store is closed`). File storage: it outlives a nats-server
    killed mid-restore, which leaves a stream partly restored (measured: 2 of 5 frames)."""
    name = restore_lock_name(api_prefix)
    lock = {"name": name, "subjects": [name], "storage": "file", "description": secrets.token_hex(16)}
    try:
        await _api(nc, f"STREAM.CREATE.{name}", lock, timeout_s)
    except BackupError as exc:
        if exc.err_code != JSStreamNameExistErr:
            raise
        raise BackupError(
            f"refusing to restore: another restore holds {name}; if none runs (one was killed), delete"
            " that stream and the streams it left, then restore again"
        ) from None
    try:
        yield
    finally:
        with contextlib.suppress(_StreamGone):
            await _api(nc, f"STREAM.DELETE.{name}", None, timeout_s)


class _StreamGone(Exception):
    pass


class _NameTaken(BackupError):
    """The server refused to restore a stream because one of that name exists now (asked
    to begin, or at the end): made after the check that none did, by another restore
    running at the same time."""


async def _snapshot(nc: Client, stream: str, directory: Path, timeout_s: float) -> Saved:
    deliver = nc.new_inbox()
    sub = await nc.subscribe(deliver)
    digest = hashlib.sha256()
    size = 0
    path = directory / f"{stream}.snapshot"
    try:
        request = {"deliver_subject": deliver, "no_consumers": True, "chunk_size": _CHUNK}
        reply = await _api(nc, f"STREAM.SNAPSHOT.{stream}", request, timeout_s)
        with _new_file(path, "wb") as out:
            while True:
                chunk = await sub.next_msg(timeout=timeout_s)
                if not chunk.data:
                    status = (chunk.headers or {}).get("Status")
                    if status is not None and not status.startswith("2"):
                        description = (chunk.headers or {}).get("Description", "")
                        raise BackupError(f"snapshot of {stream} ended with {status} {description}")
                    break
                out.write(chunk.data)
                digest.update(chunk.data)
                size += len(chunk.data)
                if chunk.reply:
                    await nc.publish(chunk.reply, b"")  # flow control: the server waits for it
    finally:
        await sub.unsubscribe()
    state = reply["state"]
    return Saved(stream, path.name, size, digest.hexdigest(), int(state["messages"]), reply["config"], state)


async def _restore_stream(
    nc: Client, directory: Path, entry: Saved, replicas: int | None, timeout_s: float
) -> None:
    config = entry.config if replicas is None else {**entry.config, "num_replicas": replicas}
    request = {"config": config, "state": entry.state}
    reply = await _api(nc, f"STREAM.RESTORE.{entry.stream}", request, timeout_s)
    deliver = reply["deliver_subject"]
    with (directory / entry.file).open("rb") as data:
        while chunk := data.read(_CHUNK):
            await nc.request(deliver, chunk, timeout=timeout_s)  # each chunk is acknowledged
    try:
        done = jsapi.answer((await nc.request(deliver, b"", timeout=timeout_s)).data)
    except jserr.APIError as err:
        failed = _NameTaken if err.err_code == JSStreamNameExistRestoreFailedErr else BackupError
        raise failed(f"restore of {entry.stream} failed: {err.description}") from None
    if done["state"].get("consumer_count"):
        # nats-server recreates the consumers a snapshot file holds, with the deliver
        # subjects it names; `backup` never saves any, so the file was made otherwise.
        raise BackupError(
            f"restore of {entry.stream}: its snapshot holds consumers, which a backup never saves"
        )
    restored = int(done["state"]["messages"])
    if restored != entry.messages:
        raise BackupError(
            f"restore of {entry.stream}: {restored} messages where the backup holds {entry.messages}"
        )


async def _persisted_rooms(nc: Client, bucket: str, timeout_s: float) -> list[str]:
    """Ids of the rooms with a stream, read from the bucket as it is now."""
    kv = await nc.jetstream(timeout=timeout_s).key_value(bucket)
    watcher = await kv.watchall()
    rooms: list[str] = []
    try:
        while (entry := await watcher.updates(timeout=timeout_s)) is not None:  # type: ignore[no-untyped-call]
            deleted = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
            if not deleted and Room.from_json(entry.value).persisted:
                rooms.append(entry.key)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return sorted(rooms)


async def _mark_nonces(nc: Client, config: Config, replicas: int, timeout_s: float) -> None:
    """Create the nonce stream (or update it) carrying the time of this restore."""
    js = nc.jetstream(timeout=timeout_s)
    mark = {RESTORED_MARK: str(_now_ms())}
    wanted = nonce_stream_config(config, replicas)
    try:
        info = await js.stream_info(nonce_stream_name(config.api_prefix))
    except jserr.NotFoundError:
        await js.add_stream(replace(wanted, metadata=mark))
    else:
        await js.update_stream(replace(info.config, metadata={**(info.config.metadata or {}), **mark}))


async def _no_instance_running(nc: Client, service_name: str, timeout_s: float) -> None:
    """Refuse while an instance of the service answers: its replay guard read the nonce
    stream when it started, so it would never see this restore's stamp and would accept
    again a request it accepted before the loss (one that ran through a wiped JetStream
    finds the bucket gone, not recreated, so nothing else stops the restore)."""
    try:
        await nc.request(ping_subject(service_name), b"", timeout=timeout_s)
    except nats.errors.NoRespondersError:
        return
    except nats.errors.TimeoutError:
        pass  # someone listens and does not answer: as good as an instance
    raise BackupError(
        f"refusing to restore: an instance of {service_name} is running; stop every instance,"
        " restore, then start them"
    )


async def _stream_exists(nc: Client, stream: str, timeout_s: float) -> bool:
    try:
        await _api(nc, f"STREAM.INFO.{stream}", None, timeout_s)
    except _StreamGone:
        return False
    return True


async def _api(nc: Client, api: str, request: dict[str, Any] | None, timeout_s: float) -> dict[str, Any]:
    """A `$JS.API.<api>` request, its refusals as this module's errors."""
    try:
        return await jsapi.request(nc, api, request, timeout_s)
    except jserr.APIError as err:
        subject = f"{jsapi.API_PREFIX}.{api}"
        if err.err_code == JSStreamNotFoundErr:
            raise _StreamGone(subject) from None
        if err.err_code == JSStreamNameExistRestoreFailedErr:
            raise _NameTaken(f"{subject}: {err.description}") from None
        raise BackupError(f"{subject}: {err.description} (err_code {err.err_code})", err.err_code) from None


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{directory}: no {MANIFEST}; not a backup made by `unibus backup`") from None
    if manifest.get("format") != FORMAT:
        found = manifest.get("format")
        raise BackupError(f"{directory}: backup format {found!r}; this version reads {FORMAT}")
    return manifest


def _verify(directory: Path, entry: Saved, config: Config) -> None:
    """Refuse anything `backup` would not have written. The checksums sit in the manifest
    itself, so they catch damage, not tampering; the shape checks keep a doctored manifest
    from making this user read files outside `directory` or restore a stream that
    captures subjects other than a room's own (control requests, say)."""
    bucket = bucket_name(config.api_prefix)
    room_id = entry.stream.removeprefix(ROOM_STREAM_PREFIX)
    subjects = entry.config.get("subjects")
    if entry.stream == f"KV_{bucket}":
        shaped = subjects == [f"$KV.{bucket}.>"]
    else:
        room_subject = f"{config.room_subject_prefix}.{room_id}"
        shaped = (
            is_room_id(room_id)
            and entry.stream == stream_name(room_id)
            and subjects == [room_subject]
            and all(bool(entry.config.get(key)) == wanted for key, wanted in _ROOM_SETTINGS.items())
        )
    republish = entry.config.get("republish")
    own = entry.stream != f"KV_{bucket}" and _is_room_republish(republish, room_id, config)
    forwarding = any(entry.config.get(key) for key in _FORWARDING if not (key == "republish" and own))
    if not shaped or forwarding or entry.file != f"{entry.stream}.snapshot":
        raise BackupError(f"{directory / MANIFEST}: {entry.stream} is not a stream `unibus backup` saves")
    path = directory / entry.file
    try:
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise BackupError(f"{path} is missing: the backup is incomplete") from None
    if actual != entry.sha256:
        raise BackupError(f"{path} does not match its checksum: the backup is damaged")


def _is_room_republish(republish: Any, room_id: str, config: Config) -> bool:
    """Whether it is the one republish every room stream carries (streams.py): each stored
    frame, whole, from the room's subject to its own stored subject, which only the room's
    members may read. Any other republish forwards frames past the permissions."""
    room_subject = f"{config.room_subject_prefix}.{room_id}"
    return (
        isinstance(republish, dict)
        and set(republish) <= {"src", "dest", "headers_only"}
        and republish.get("src") == room_subject
        and republish.get("dest") == stored_subject(room_subject)
        and not republish.get("headers_only")
    )


def _new_file(path: Path, mode: str) -> IO[Any]:
    """A file that did not exist (nor a link in its place), readable by its owner only."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), mode)


def _now_ms() -> int:
    return int(time.time() * 1000)
