"""The trust boundary (docs/security.md): the auth callout that admits each connection
with permissions from its rooms, the nats-server configuration of the static users, their
keys, and cutting connections when rooms change."""
