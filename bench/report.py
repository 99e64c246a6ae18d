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
  envelope and decoded by the client, end to end.
- **baseline**: the original Go endpoint's algorithm done from Python: stream info, then one
  message get per sequence (a direct get when the stream allows it, as Go's `GetMsg` does).
- **floor**: the same window streamed from JetStream straight into the client process by a
  short-lived consumer: no service, no signature, no envelope.
- **allow_direct**: every history measurement is repeated with the stream's `allow_direct`
  off (what a Go client's stream update leaves) and on.
- throughput: 32 closed-loop callers for the stated time against one, then two instances in
  one queue group; interference: limit=10 latency alone and while a limit=1000 read is always
  in flight; revocation: a member removed through the queue group of two instances, timed from
  the removal's reply until its next read is refused; creation: persisted rooms (stream + row)
  by 16 concurrent callers; memory: VmRSS of a fresh instance after loading 10,000 room rows
  of 10 members each from the bucket.

The machine is shared and noisy: treat single figures as indicative, compare columns of the
same run, and never read them as guarantees. `make test` asserts no timing."""


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms"


def latency_table(results: dict[str, dict[str, dict[int, Latency]]], limits: list[int]) -> list[str]:
    lines = [
        "| allow_direct | limit | service p50 | service p99 | baseline p50 | floor p50"
        " | baseline / service | service / floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, paths in results.items():
        for limit in limits:
            s, b, f = paths["service"][limit], paths["baseline"][limit], paths["floor"][limit]
            lines.append(
                f"| {mode} | {limit} | {fmt_ms(s.p50)} | {fmt_ms(s.p99)} | {fmt_ms(b.p50)} | {fmt_ms(f.p50)}"
                f" | {b.p50 / s.p50:.1f}x | {s.p50 / f.p50:.2f}x |"
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
    for name, style in (("baseline", "s--"), ("service", "o-"), ("floor", "^:")):
        ax.plot(limits, [results[name][n].p50 for n in limits], style, label=name)
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
