"""The ground floor: what peers, the shim and the service must agree on.

Names of subjects, streams, buckets and headers, the signed-request scheme, JetStream's
error codes and the one raw JetStream API request, room ids, and the one builder of NATS
connections. Nothing here imports a server package (docs/architecture.md), so the peer
library (`unibus.client`) and the shim stand on this floor alone.
"""
