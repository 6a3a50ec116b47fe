"""Durations written the way policies write them: `30m`, `6h`, `3d`, `2w`."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 6h, 3d or 2w")
    value, unit = match.groups()
    return timedelta(**{_UNITS[unit]: int(value)})


@lru_cache(maxsize=1024)  # a policy's few durations, formatted for every plan's reasons
def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for size, suffix in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"
