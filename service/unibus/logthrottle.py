"""Log lines that outsiders can cause, at a bounded rate, with counts.

A refused connect, or a reply the server would not carry, is logged where it happens; an
attacker can cause thousands a second (1,700 refused connects a second wrote 1,700 lines a
second), burying everything else and filling disks. So such lines go through a `Throttle`:
of each kind, one line per `every_s`, and the next line of that kind says how many were
left out since. The metrics count every event (docs/operations.md); the log shows that it
happens, an example, and how often.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_KINDS = 256
"""Kinds tracked at once; more (an attacker varying something a kind is made from) start
over, which bounds memory and still lets at most this many lines through per interval."""


@dataclass
class _Kind:
    logged_at: float
    left_out: int = 0


@dataclass
class Throttle:
    logger: logging.Logger
    every_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _kinds: dict[str, _Kind] = field(default_factory=dict)

    def log(self, level: int, kind: str, msg: str, *args: object) -> bool:
        """Log `msg % args` at `level` unless a line of `kind` went out less than `every_s`
        ago; then it is only counted. Whether it was logged."""
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen.logged_at < self.every_s:
            seen.left_out += 1
            return False
        if len(self._kinds) >= MAX_KINDS:
            self._kinds.clear()
        if seen is not None and seen.left_out:
            msg = f"{msg} (and %d more like it since the last such line)"
            args = (*args, seen.left_out)
        self._kinds[kind] = _Kind(now)
        self.logger.log(level, msg, *args)
        return True
