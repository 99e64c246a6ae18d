"""JetStream error codes (`err_code`) this package acts on, under the names nats-server
gives them in `server/jetstream_errors_generated.go`, so a reader can look each one up.

nats-py names only a few (`KeyWrongLastSequenceError` for 10071 inside its KV); everything
else arrives as an `APIError` whose `err_code` is compared with these.
"""

from __future__ import annotations

from typing import Final

JSNotEnabledForAccountErr: Final = 10039
"""503 "JetStream not enabled for account"."""
JSStorageResourcesExceededErr: Final = 10047
"""500 "insufficient storage resources available": a stream's reservation does not fit."""
JSStreamNameExistErr: Final = 10058
"""400 "stream name already in use with a different configuration"."""
JSStreamNotFoundErr: Final = 10059
"""404 "stream not found"."""
JSStreamWrongLastSequenceErrF: Final = 10071
"""400 "wrong last sequence: {seq}": a compare-and-set lost to another write."""
JSStreamNameExistRestoreFailedErr: Final = 10130
"""400 "stream name already in use, cannot restore"."""
JSStreamDuplicateMessageConflict: Final = 10158
"""409 "duplicate message id is in process": a copy arriving while the first replicates."""
