"""The benchmark's table, written to stdout and to docs/benchmarks.md, and its plot."""

from __future__ import annotations

from pathlib import Path

from .measure import Latency

METHOD = """## How these numbers are made

Reproduce with `make bench` (it installs what it needs; `.venv/bin/python -m bench --quick` checks
the harness in a few seconds). The harness starts its own nats-server (JetStream, file storage)
and real `unibus serve` processes on loopback, seeds one persisted room with 1,000 frames of
300 random bytes, and measures from a separate client process:

- **service**: a signed `rooms.<id>.history` request (enforce mode) answered with the JSON
  envelope and decoded by the client, end to end; **warm** from an instance whose frame
  cache holds the room (the default), **cold** from one whose cache is too small to keep
  anything (`UNIBUS_HISTORY_CACHE_BYTES=1`: every read misses and pays for trying), **no
  cache** from one with it off (`0`: round one's path).
- **baseline**: the original Go endpoint's algorithm done from Python: stream info, then one
  message get per sequence (a direct get when the stream allows it, as Go's `GetMsg` does).
- **floor**: the same window streamed from JetStream straight into the client process by a
  short-lived consumer: no service, no signature, no envelope.
- **allow_direct**: the no-cache, baseline and floor measurements are repeated with the
  stream's `allow_direct` off (what a Go client's stream update leaves) and on.
- throughput: 32 closed-loop callers for the stated time against one instance without a
  cache, then one and two warm instances in one queue group; interference: limit=10
  latency alone and while a limit=1000 read is always in flight; revocation: a member
  removed through the queue group of two instances, timed from the removal's reply until
  its next read is refused; creation: persisted rooms (stream + row) by 16 concurrent
  callers; memory: VmRSS of a fresh instance after loading 10,000 room rows of 10
  members each from the bucket.
- revocation (`bench/revocation.py`, docs/security.md): two instances on one nats-server
  with the trust boundary; 50 removals of a connected, subscribed member per scenario
  (plain; while 16 tasks connect and close other identities; written to the bucket with
  its writer killed by SIGKILL, so only the other instance's watch acts; right after a
  NATS restart), each timed from the removal's reply (or write) until nats-server refuses
  the member's re-subscription when its client comes back; then new identities connecting
  through the callout from 16 loops for 10 s, and the service CPU that took, which prices
  re-authorizing every connection once per JWT lifetime.
- rooms at scale (`bench/scale.py`): 100 and then 10,000 persisted rooms, each on its own
  nats-server and instance: creation by 16 callers, 20 frames of 300 B published into
  each, resident memory, a fresh instance's start until it serves, then history(limit=20)
  of 200 random rooms read once (cold) and again (warm).

The machine is shared and noisy: treat single figures as indicative, compare columns of the
same run, and never read them as guarantees. `make test` asserts no timing."""


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms"


def latency_table(results: dict[str, dict[str, dict[int, Latency]]], limits: list[int]) -> list[str]:
    """Per limit: the service warm (frames in the cache) and cold (cache missing), and
    without a cache, beside the original algorithm and the raw floor."""
    lines = [
        "| allow_direct | limit | warm p50 | warm p99 | cold p50 | no cache p50 | no cache p99 | baseline p50"
        " | floor p50 | baseline / warm | warm / floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, paths in results.items():
        for limit in limits:
            s, b, f = paths["service"][limit], paths["baseline"][limit], paths["floor"][limit]
            w, c = paths.get("warm", {}).get(limit), paths.get("cold", {}).get(limit)
            warm = f"{fmt_ms(w.p50)} | {fmt_ms(w.p99)}" if w else "— | —"
            ratios = f"{b.p50 / w.p50:.1f}x | {w.p50 / f.p50:.2f}x" if w else "— | —"
            cold = fmt_ms(c.p50) if c else "—"
            lines.append(
                f"| {mode} | {limit} | {warm} | {cold} | {fmt_ms(s.p50)} | {fmt_ms(s.p99)}"
                f" | {fmt_ms(b.p50)} | {fmt_ms(f.p50)} | {ratios} |"
            )
    return lines


def plot(results: dict[str, dict[int, Latency]], limits: list[int], path: Path) -> bool:
    """Latency against limit, log scale; skipped (False) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = (("baseline", "s--"), ("service", "o-"), ("cold", "x-"), ("warm", "d-"), ("floor", "^:"))
    for name, style in curves:
        label = "no cache" if name == "service" else name
        ax.plot(limits, [results[name][n].p50 for n in limits], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("history limit (messages of 300 B)")
    ax.set_ylabel("p50 latency (ms)")
    ax.set_title("history: service vs original algorithm vs raw JetStream floor")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
