"""Replay protection: a (signer, nonce) pair is accepted once inside the timestamp window.

Outside the window the timestamp check refuses a request anyway, so an entry only needs
to live until its timestamp leaves the window; that bounds memory by request rate.
"""

from __future__ import annotations

import heapq
import time
from typing import Protocol


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
