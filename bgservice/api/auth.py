"""API keys: who is calling.

- ``BGSERVICE_API_KEYS``: comma-separated ``name:key`` or bare ``key`` entries; several keys under one name
  allow rotation (each key is its own owner: a job is visible to the key that made it).
- Sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; missing or unknown -> 401 ``unauthorized``.
- Only in the embedded default (no keys configured, SQLite): one dev key is made once, kept in
  ``<data dir>/dev-api-key`` (0600), and printed by ``bgservice serve``. With PostgreSQL and no keys the
  service refuses to start (``invalid_settings``): a cluster never runs with a key nobody configured.
- A key is known to the rest of the service only by its id, the SHA-256 hex of the key (never the key);
  ``folder_id``, the result folder, is derived from the id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from bgservice.errors import InvalidSettings, Unauthorized
from bgservice.settings import Settings

DEV_KEY_FILE = "dev-api-key"


def key_id(key: str) -> str:
    """The id a key is stored and owned under: SHA-256 hex of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def folder_id(owner: str) -> str:
    """The stable result folder of a key id (derived from the id, never the key)."""
    return hashlib.sha256(f"folder:{owner}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Caller:
    key_id: str
    name: str

    @property
    def folder_id(self) -> str:
        return folder_id(self.key_id)


def parse_keys(text: str) -> dict[str, str]:
    """``{key_id: name}`` from ``name:key,key2,...``; an empty entry or key is ``invalid_settings``."""
    out: dict[str, str] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, key = entry.partition(":")
        if not sep:
            name, key = "", entry
        name, key = name.strip(), key.strip()
        if not key:
            raise InvalidSettings("BGSERVICE_API_KEYS: an entry has an empty key")
        kid = key_id(key)
        out[kid] = name or f"key-{kid[:8]}"
    return out


def _is_embedded(settings: Settings) -> bool:
    url = getattr(settings, "database_url", None)
    return url is None or str(url).startswith("sqlite")


def data_dir(settings: Settings) -> Path:
    path = getattr(settings, "data_dir", None)
    if path is None:  # pragma: no cover - the store's settings always give one
        from bgservice.settings import default_data_dir

        path = default_data_dir()
    return Path(path)


def dev_key(settings: Settings, *, create: bool = True) -> str | None:
    """The embedded default's dev key (made once, 0600 under the data dir); ``None`` when keys are
    configured or the store is not the embedded SQLite."""
    if settings.api_keys.get_secret_value().strip() or not _is_embedded(settings):
        return None
    path = data_dir(settings) / DEV_KEY_FILE
    if path.is_file():
        text = path.read_text().strip()
        if text:
            return text
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = "dev_" + secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip() or None
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


class KeyRing:
    """The keys this service accepts (read once per process)."""

    def __init__(self, settings: Settings) -> None:
        configured = settings.api_keys.get_secret_value()
        self._keys = parse_keys(configured)
        if not self._keys:
            key = dev_key(settings)
            if key is None:
                raise InvalidSettings(
                    "BGSERVICE_API_KEYS: no API key configured (required outside the embedded SQLite default)"
                )
            self._keys = {key_id(key): "dev"}

    def authenticate(self, authorization: str | None, x_api_key: str | None) -> Caller:
        key = None
        if x_api_key:
            key = x_api_key.strip()
        elif authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                key = value.strip()
        if not key:
            raise Unauthorized("missing API key: send Authorization: Bearer <key> or X-API-Key: <key>")
        kid = key_id(key)
        for known, name in self._keys.items():
            if hmac.compare_digest(known, kid):
                return Caller(key_id=known, name=name)
        raise Unauthorized("unknown API key")
