"""What an operator runs against a deployment's JetStream streams: backup and restore, and
the store reservations of the control plane's own streams. It sits above `storage/` and
`auth/` (backup saves both their streams); nothing below it imports it."""
