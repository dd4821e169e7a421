"""Parse user time values: ``12``, ``12.5``, ``mm:ss``, ``hh:mm:ss(.fff)``."""

from __future__ import annotations

import math
import re

from bgservice.errors import InvalidTrim

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_SECONDS = re.compile(rf"^(?:{_NUMBER})$")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d*)?)$")


def parse_time(value: str | float | int | None, *, name: str = "time") -> float | None:
    """Seconds as a float, ``None`` for ``None``/empty; :class:`InvalidTrim` for anything malformed."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidTrim(f"{name}: expected seconds or hh:mm:ss, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if not text:
            return None
        if text.startswith("-"):
            raise InvalidTrim(f"{name} must not be negative: {value!r}")
        if _SECONDS.match(text):
            seconds = float(text)
        else:
            m = _CLOCK.match(text)
            if not m:
                raise InvalidTrim(f"{name}: expected seconds (12.5) or [hh:]mm:ss(.fff), got {value!r}")
            hours, minutes, secs = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
            if minutes >= 60 or secs >= 60:
                raise InvalidTrim(f"{name}: minutes and seconds must be below 60 in {value!r}")
            seconds = hours * 3600 + minutes * 60 + secs
    if not math.isfinite(seconds):
        raise InvalidTrim(f"{name} must be a finite number: {value!r}")
    if seconds < 0:
        raise InvalidTrim(f"{name} must not be negative: {value!r}")
    return seconds
