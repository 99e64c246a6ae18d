"""Where a signed read's reply may go, and when its nonce need not be claimed.

A read changes nothing, so replaying a captured one matters only to whoever receives the
answer. Under the trust boundary nats-server lets a peer's connection subscribe below
`_INBOX.<its key>` and nowhere else under `_INBOX`, and the responder may publish replies
to `_INBOX.>` only (docs/security.md). So:
- a read answered to the signer's own inbox reaches the signer's connections and nobody
  else's; replayed, it re-sends the signer a page it did not ask for and tells the
  replayer nothing. It needs no replay claim, which is a JetStream write per read;
- a read whose reply names another identity's inbox is refused: that is the one place a
  replayer could receive a captured read (its own inbox), and no client of this protocol
  sends its reads there;
- any other reply (a static user's inbox: the HTTP shim relaying a browser's read, the
  service's in-process shim) keeps the claim, since the relay hands the answer on.

Without the boundary nats-server restricts no subscription, so every read keeps the claim.
The argument, and what it leaves open, is in docs/security.md ("Replays of reads").
"""

from __future__ import annotations

from .. import identity
from ..errors import DomainError


class ReplyElsewhere(DomainError):
    """A signed read whose reply names another identity's inbox (403)."""


def needs_claim(reply: str, signer: str) -> bool:
    """Whether a read signed by `signer` and answered to `reply` must claim its nonce
    under the trust boundary; `ReplyElsewhere` for a reply to another identity's inbox."""
    if reply.startswith(f"{identity.inbox_prefix(signer)}."):
        return False
    root, _, rest = reply.partition(".")
    if root == "_INBOX" and identity.is_public_key(rest.partition(".")[0]):
        raise ReplyElsewhere("a read's reply must go to the signer's own inbox")
    return True
