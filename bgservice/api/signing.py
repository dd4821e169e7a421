"""Result URLs that expire.

- S3 storage: a presigned ``GET`` URL (s3fs / botocore), valid ``BGSERVICE_URL_TTL_SECONDS``.
- Local storage: ``/v2/files/{key}?expires=<unix seconds>&signature=<hex>``, where the signature is
  HMAC-SHA256 over ``"{key}\\n{expires}"`` with the service's signing secret (generated once and kept in
  the database, so every replica checks what any replica signed; ``BGSERVICE_SECRET`` overrides).
  A tampered or expired URL -> 403 ``forbidden``.

URLs are signed afresh at every ``GET /v2/jobs/{id}``; the answer's ``expires_at`` is the earlier of the
URL's end and the result's retention end.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

from bgservice.errors import Forbidden


def signature(secret: bytes, key: str, expires: int) -> str:
    return hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_path(secret: bytes, key: str, expires: int) -> str:
    """The path and query of a signed local file URL (the caller prefixes the service's base URL)."""
    query = urlencode({"expires": str(expires), "signature": signature(secret, key, expires)})
    return f"/v2/files/{quote(key)}?{query}"


def verify(
    secret: bytes, key: str, expires: str | None, sig: str | None, *, now: float | None = None
) -> None:
    """Raise :class:`Forbidden` unless ``sig`` signs ``key`` until ``expires`` and that is still ahead."""
    if not expires or not sig:
        raise Forbidden("the URL is not signed")
    try:
        until = int(expires)
    except ValueError:
        raise Forbidden("the URL's expiry is malformed") from None
    if not hmac.compare_digest(signature(secret, key, until), sig.strip().lower()):
        raise Forbidden("the URL's signature does not match")
    if until <= (time.time() if now is None else now):
        raise Forbidden("the URL has expired")
