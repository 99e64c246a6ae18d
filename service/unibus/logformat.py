"""Log lines for people (`text`, the default) or for a log pipeline (`json`: one object
per line with `ts`, `level`, `logger`, `msg` and, for an exception, `exc`), chosen with
UNIBUS_LOG_FORMAT.

Either way one record is one line that nobody else wrote: log messages carry what clients
chose (connection names, subjects, headers, paths), and a newline in a connection name
must not become a line of its own that reads like the service's. JSON escapes by itself;
the text format escapes control and bidirectional-override characters in the message
(`\\n`, `\\x1b`, `\\u202e`) and indents every line of a traceback.
"""

from __future__ import annotations

import datetime
import json
import logging
import re

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape(text: str) -> str:
    """`text` with every character that could end a line, move the cursor or turn text
    around spelled as a Python escape."""
    return _UNSAFE.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:
        return _indented(super().formatException(ei))  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    """Continuation lines of a record start with spaces, so none can pass for a record."""
    return "\n".join("    " + escape(line) for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line = {
            "ts": when.isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
