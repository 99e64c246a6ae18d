"""`make bench`: the control plane measured side by side with the original algorithm and
the raw JetStream floor, on processes this harness starts itself (loopback only)."""
