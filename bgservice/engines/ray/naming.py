"""Names of the long-lived (detached) actors: they carry the package version and a hash of the settings
the actor was started with, so a deploy with new code or new settings never talks to an actor left by
the old one (a detached actor otherwise keeps its first creator's code and settings until killed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from bgservice import __version__
from bgservice.settings import Settings

NAMESPACE = "bgservice"


def settings_hash(settings: Settings, fields: Iterable[str] | None = None) -> str:
    """12 hex digits of SHA-256 over ``fields`` of ``settings`` (all of them when ``None``)."""
    data = settings.model_dump(mode="json")
    if fields is not None:
        data = {name: data[name] for name in fields}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def versioned_name(prefix: str, settings: Settings, fields: Iterable[str] | None = None) -> str:
    """``<prefix>-<version>-<hash>``, e.g. ``bgservice-segmenter-pool-0.1.0-3f2a9c01b7de``."""
    return f"{prefix}-{__version__}-{settings_hash(settings, fields)}"
