"""Structured log events: one event per line, `event=NAME key=value ...`.

Every replica state change, epoch change, alarm and recovery start/end goes through `event()`
(or `transition()` for a replica's state), so an operator can grep or parse them all the same
way (docs/operations.md, "Log events"). Values with spaces, quotes or `=` are JSON-quoted;
`parse_event()` reads a line back. Events are also counted (`counts`) for the metrics.

Not hot path: state changes and alarms are rare; nothing here runs per write.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from typing import Any

log = logging.getLogger("webfront.coordinator")

# How many times each event was logged by this process (exported as metrics).
counts: Counter[str] = Counter()

_PLAIN = re.compile(r"^[A-Za-z0-9_.:/@+\-]+$")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def format_value(value: Any) -> str:
    text = value.hex() if isinstance(value, bytes) else str(value)
    return text if _PLAIN.match(text) else json.dumps(text)


def format_event(name: str, **fields: Any) -> str:
    parts = [f"event={name}"]
    parts += [f"{k}={format_value(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


def event(name: str, level: str = "info", **fields: Any) -> None:
    """Log one event line. `msg` (if given) is a human sentence kept as the last field."""
    counts[name] += 1
    msg = fields.pop("msg", None)
    if msg is not None:
        fields["msg"] = msg
    log.log(LEVELS[level], "%s", format_event(name, **fields))


def transition(link: Any, state: str, reason: str, level: str = "info", **fields: Any) -> None:
    """Set a replica's state and log `event=replica_state` when it changed."""
    was = link.state
    link.state = state
    if was != state:
        event("replica_state", level=level, replica=link.id, **{"from": was}, to=state,
              reason=reason, **fields)


def parse_event(line: str) -> dict[str, str] | None:
    """The fields of the event on a log line (None when the line holds no event)."""
    at = line.find("event=")
    if at < 0:
        return None
    out: dict[str, str] = {}
    for key, value in _FIELD.findall(line[at:]):
        out[key] = json.loads(value) if value.startswith('"') else value
    return out
