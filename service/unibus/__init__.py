"""unibus control plane: rooms, membership, signed requests and durable history over NATS."""

__version__ = "0.1.0"
