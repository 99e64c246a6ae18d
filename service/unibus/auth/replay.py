"""Replay protection: a (signer, nonce) pair is accepted once inside the timestamp window.

Outside the window the timestamp check refuses a request anyway, so an entry only needs
to live until its timestamp leaves the window; that bounds memory by request rate.

With several instances in a queue group a captured request can be replayed to another
instance, so `SharedNonces` keeps the pairs in JetStream where every instance sees them.
"""

from __future__ import annotations

import asyncio
import heapq
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import nats.js.errors as jserr
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from ..config import Config
from ..errors import DomainError
from ..storage.sqlite import open_database
from ..wire.jscodes import JSStreamDuplicateMessageConflict, JSStreamNameExistErr
from ..wire.names import nonce_stream_name, nonce_subject

RESTORED_MARK = "unibus.restored_at_ms"
"""Nonce stream metadata: when `unibus restore` rebuilt this deployment (operations/backup.py)."""


def nonce_stream_config(config: Config, replicas: int) -> StreamConfig:
    """The nonce stream: ids kept as long as a request with them could still be accepted."""
    keep = 2 * config.clock_skew_s
    return StreamConfig(
        name=nonce_stream_name(config.api_prefix),
        subjects=[nonce_subject(config.api_prefix)],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,  # survives a whole-cluster restart inside the window
        num_replicas=max(1, replicas),
        duplicate_window=keep,
        max_age=keep,
        # Reserved, so room traffic cannot starve the replay check (operations/reservation.py).
        # Discard old: a flood beyond it drops stored ids, not requests; the server's
        # duplicate map still holds them for the window while it runs.
        max_bytes=config.nonces_max_bytes,
    )


class ReplayCheckUnavailable(DomainError):
    """The replay check cannot be made now, so the request is not accepted: never waved
    through unchecked (503; signing again later will do)."""


class ReplayGuard(Protocol):
    async def claim(self, signer: str, nonce: str, timestamp_ms: int) -> bool:
        """True the first time a (signer, nonce) is seen, False for a replay."""
        ...


class LocalNonces:
    """In-process guard: enough for one instance (see `SharedNonces` for a queue group)."""

    def __init__(self, window_s: float) -> None:
        self._window_ms = int(window_s * 1000)
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[int, str, str]] = []

    async def claim(self, signer: str, nonce: str, timestamp_ms: int) -> bool:
        self._evict(int(time.time() * 1000))
        key = (signer, nonce)
        if key in self._seen:
            return False
        self._seen.add(key)
        heapq.heappush(self._expiry, (timestamp_ms + self._window_ms, signer, nonce))
        return True

    def _evict(self, now_ms: int) -> None:
        while self._expiry and self._expiry[0][0] < now_ms:
            _, signer, nonce = heapq.heappop(self._expiry)
            self._seen.discard((signer, nonce))

    def __len__(self) -> int:
        return len(self._seen)


class SqliteNonces:
    """The guard of the SQLite fallback (no JetStream): claims kept in a file for the
    window, so a captured request replayed after a restart is still refused."""

    def __init__(self, path: str | Path, window_s: float) -> None:
        self._window_ms = int(window_s * 1000)
        self._db = open_database(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS nonces"
            " (signer TEXT, nonce TEXT, expires_ms INTEGER NOT NULL, PRIMARY KEY (signer, nonce))"
        )

    async def claim(self, signer: str, nonce: str, timestamp_ms: int) -> bool:
        now_ms = int(time.time() * 1000)
        self._db.execute("DELETE FROM nonces WHERE expires_ms < ?", (now_ms,))
        try:
            self._db.execute(
                "INSERT INTO nonces VALUES (?, ?, ?)", (signer, nonce, timestamp_ms + self._window_ms)
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def close(self) -> None:
        self._db.close()


class SharedNonces:
    """Cluster-wide guard: JetStream message de-duplication on `Nats-Msg-Id`.

    Each claim publishes an empty message with id `<signer>.<nonce>` to a small stream; the
    stream leader answers a second publish of the same id inside `duplicate_window` with
    `duplicate: true`, whichever instance sent it. A pair must be remembered from its
    arrival until its timestamp leaves the window, which is at most 2 x window later (the
    timestamp may be up to one window in the future), hence the stream's window and age.
    Measured against a KV `create` per pair on an R3 cluster, this costs less (see
    docs/operations.md). If JetStream cannot answer, the claim raises and the request gets
    503: a replay check that cannot be made is never waved through.
    """

    def __init__(
        self, js: JetStreamContext, stream: str, subject: str, timeout_s: float, signed_from_ms: int = 0
    ) -> None:
        self._js = js
        self._stream = stream
        self._subject = subject
        self._timeout = timeout_s
        self._signed_from_ms = signed_from_ms
        """Requests signed earlier are refused: after a restore, their nonces may have
        been claimed in the stream that was lost."""

    @classmethod
    async def open(cls, js: JetStreamContext, config: Config, replicas: int) -> SharedNonces:
        """Create the stream (or adopt it) and claim on `<api_prefix>.nonces`."""
        stream = nonce_stream_config(config, replicas)
        name, timeout_s = nonce_stream_name(config.api_prefix), config.js_timeout_s
        signed_from_ms = 0
        try:
            # Looked up first: JetStream checks an add's reservation before it finds the
            # stream exists, so on a store full of rooms even an add of the same config is
            # refused, and no instance could start (test_storage.py).
            info = await asyncio.wait_for(js.stream_info(name), timeout_s)
        except jserr.NotFoundError:
            info = None
        if info is None:
            try:
                await asyncio.wait_for(js.add_stream(stream), timeout_s)
            except jserr.APIError as err:
                if err.err_code != JSStreamNameExistErr:  # another instance starting made it
                    raise
        else:
            metadata = info.config.metadata or {}
            # Widen a window another instance set up smaller; never narrow one.
            if (info.config.duplicate_window or 0) < (stream.duplicate_window or 0):
                await asyncio.wait_for(js.update_stream(replace(stream, metadata=metadata)), timeout_s)
            if RESTORED_MARK in metadata:
                # A request accepted before the loss was signed at most one window after
                # it, and the loss came before the restore.
                signed_from_ms = int(metadata[RESTORED_MARK]) + int(config.clock_skew_s * 1000)
        return cls(js, name, nonce_subject(config.api_prefix), timeout_s, signed_from_ms)

    async def claim(self, signer: str, nonce: str, timestamp_ms: int) -> bool:
        if timestamp_ms < self._signed_from_ms:
            resumes = datetime.fromtimestamp(self._signed_from_ms / 1000, UTC).isoformat(timespec="seconds")
            raise ReplayCheckUnavailable(
                f"replay protection resumes after a restore: requests signed before {resumes} are refused;"
                " sign again then"
            )
        try:
            ack = await self._js.publish(
                self._subject,
                b"",
                timeout=self._timeout,
                stream=self._stream,
                headers={"Nats-Msg-Id": f"{signer}.{nonce}"},
            )
        except jserr.NoStreamResponseError:
            # No leader for the stream right now (e.g. its node was just lost): retryable.
            raise ReplayCheckUnavailable("replay check unavailable, try again") from None
        except jserr.APIError as err:
            # A clustered stream refuses a copy that arrives while the first is still being
            # replicated (measured on 2.15.1): that copy is a replay as much as a later one.
            if err.err_code == JSStreamDuplicateMessageConflict:
                return False
            raise
        return not ack.duplicate
