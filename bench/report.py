"""The benchmark's table, written to stdout and to docs/benchmarks.md, and its plot."""

from __future__ import annotations

from pathlib import Path

from .measure import Latency

METHOD = """## How these numbers are made

Reproduce with `make bench` (it installs what it needs; `.venv/bin/python -m bench --quick` checks
the harness in a few minutes). The harness starts its own nats-server (JetStream, file storage)
and real `unibus serve` processes on loopback, seeds one persisted room with 1,000 frames of
300 random bytes, and measures from separate client processes.

The reads, floors, CPU, throughput and interference run on the **shipped trust boundary**
(`serverconf.render`, as every shipped configuration runs it): the bench's peer connects as
its own identity through the auth callout and gets its replies under `_INBOX.<its key>`, so
its reads need no replay claim (docs/security.md, "Replays of reads"); the floors and the
setup use the control plane's own `service` user, the only one that may touch JetStream.
Creation, memory and revocation run on an open server (the boundary does not change them).

- **service**: a signed `rooms.<id>.history` request (enforce mode) answered with the JSON
  envelope and decoded by the client, end to end; **warm** from an instance whose frame
  cache holds the room (the default), **cold** from one whose cache is too small to keep
  anything (`UNIBUS_HISTORY_CACHE_BYTES=1`: every read misses and pays for trying), **no
  cache** from one with it off (`0`: round one's path). Warm and cold are measured from a
  Python caller (nats-py) and from a **Go caller** (`bench/go`, nats.go, signing with the
  example peer's `request.go`), timed inside each process.
- **baseline**: the original Go endpoint's algorithm done from Python: stream info, then one
  message get per sequence (a direct get when the stream allows it, as Go's `GetMsg` does).
- **floor**: the same window streamed from JetStream straight into the client by a
  short-lived consumer, with no service, no signature, no envelope: from Python (a push
  consumer, as the service reads) and from Go (nats.go's ordered consumer, `bench/go`,
  built offline in GOPATH mode against Debian's nats.go). Every ratio to "the floor" is
  to the faster of the two at that limit.
- **allow_direct**: the no-cache, baseline and Python floor measurements are repeated with
  the stream's `allow_direct` off (what a Go client's stream update leaves) and on.
- throughput: 32 closed-loop callers for the stated time against one instance without a
  cache, then one and two warm instances in one queue group. **CPU per request** is the
  user + system time of the `unibus serve` processes and of nats-server read from
  `/proc/<pid>/stat` before and after, divided by the requests served: CPU time, not wall
  time, so a machine loaded by others changes the rate but much less the cost. The "at
  most" figure divides the cores by the CPU of all three parties (the callers included):
  what bounds two instances on this machine. Interference: limit=10 latency alone and
  while another process always has a limit=1000 read in flight; revocation: a member
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
- rooms at scale (`bench/scale.py`): 1,000 and then 10,000 persisted rooms (100 and 1,000
  with `--quick`) on a 3-node cluster, R1 streams placed by JetStream, each room on its own
  stream: creation by 16 callers (a creator identity per 500 rooms) with the CPU it took
  in the instance and in the nats-servers, 20 frames of 300 B published into each room,
  resident memory of every node and of the instance, a fresh instance's start until it
  serves (asked every 0.25 s) and its own CPU for it, then history(limit=20) of 200 random
  rooms read once (cold) and again (warm). Larger counts run alone:
  `python -m bench.scale --rooms 1000,10000,20000`.
- an instance against its bucket's rows (`bench/rows.py`): 10,000 and then 100,000 rows
  (1,000 and 10,000 with `--quick`) written straight into the room bucket on the same
  kind of cluster, as `create` writes them, for persisted rooms whose streams are not made
  (creating 100,000 streams is hours of nats-server's meta leader: `bench/creation.py`
  profiles why); a fresh instance started three times at each count: time until it
  serves, its CPU until then, its resident memory once serving.
- profile: `python -m bench.profile [seconds] [out]` runs the warm throughput load on the
  boundary and samples the instance with py-spy (`pip install py-spy`; not a dependency),
  printing the CPU per request and the functions' inclusive shares.

The machine is shared and noisy: treat single figures as indicative, compare columns of the
same run, and never read them as guarantees. `make test` asserts no timing."""


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms"


def latency_table(results: dict[str, dict[str, dict[int, Latency]]], limits: list[int]) -> list[str]:
    """Per limit: the service warm (frames in the cache) and cold (cache missing) from a
    Python and a Go caller, and without a cache, beside the original algorithm and the raw
    floors (Python and Go consumers); ratios against the faster floor."""
    lines = [
        "| allow_direct | limit | warm p50 | warm p99 | warm (Go) p50 | cold p50 | cold (Go) p50"
        " | no cache p50 | no cache p99 | baseline p50 | floor p50 | floor (Go) p50 | baseline / warm"
        " | warm / faster floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def p50(paths: dict[str, dict[int, Latency]], name: str, limit: int) -> str:
        found = paths.get(name, {}).get(limit)
        return fmt_ms(found.p50) if found else "—"

    for mode, paths in results.items():
        for limit in limits:
            s, b, f = paths["service"][limit], paths["baseline"][limit], paths["floor"][limit]
            w, g = paths.get("warm", {}).get(limit), paths.get("go floor", {}).get(limit)
            fastest = min(f.p50, g.p50) if g else f.p50
            warm = f"{fmt_ms(w.p50)} | {fmt_ms(w.p99)}" if w else "— | —"
            ratios = f"{b.p50 / w.p50:.1f}x | {w.p50 / fastest:.2f}x" if w else "— | —"
            lines.append(
                f"| {mode} | {limit} | {warm} | {p50(paths, 'go warm', limit)} | {p50(paths, 'cold', limit)}"
                f" | {p50(paths, 'go cold', limit)} | {fmt_ms(s.p50)} | {fmt_ms(s.p99)} | {fmt_ms(b.p50)}"
                f" | {fmt_ms(f.p50)} | {p50(paths, 'go floor', limit)} | {ratios} |"
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
    curves = (
        ("baseline", "s--"),
        ("service", "o-"),
        ("cold", "x-"),
        ("warm", "d-"),
        ("floor", "^:"),
        ("go floor", "v:"),
    )
    for name, style in curves:
        if name not in results:
            continue
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
