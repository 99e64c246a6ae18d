"""Reading a room's backlog (docs/architecture.md): the query, the window, the reader, the
reply and the cache of recent frames."""
