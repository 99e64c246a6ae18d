"""Waiting out replay protection after a restore, instead of failing with it.

For one clock-skew window after `unibus restore` every instance refuses signed requests
stamped before a time it names (docs/operations.md, "Replay protection after a
restore"), with 503. A person at the CLI would otherwise retry by hand until it passes;
here the command says what it is waiting for, sleeps until that time and signs again, as
long as `--timeout` allows. Other 503s are ControlClient's: a read is retried within
`--timeout`, a change fails at once.
"""

from __future__ import annotations

import asyncio
import sys
import time

from ..client import ControlClient, Unavailable
from .output import CliError

_MARGIN_S = 1.0
"""The service names the time to the second, rounded down."""


class PatientControl(ControlClient):
    """A ControlClient whose requests wait out a restore's replay window, within
    `timeout_s` in all, saying so on stderr."""

    async def request_raw(
        self, suffix: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return await super().request_raw(suffix, body, headers)
            except Unavailable as exc:
                resumes = exc.resumes_at
                if resumes is None:
                    raise
                wait = max(resumes - time.time(), 0.0) + _MARGIN_S
                if time.monotonic() + wait > deadline:
                    raise CliError(
                        f"{exc.code} {exc.message} (that is {wait:.0f} s from now, beyond --timeout "
                        f"{self.timeout_s:g}s: give a longer one, e.g. --timeout 3m)"
                    ) from None
                print(
                    f"unibus: replay protection resumes after a restore; waiting {wait:.0f} s to sign again",
                    file=sys.stderr,
                    flush=True,
                )
                await asyncio.sleep(wait)
