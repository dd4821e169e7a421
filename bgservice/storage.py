"""Files in and out through fsspec: local paths, ``file://``, ``s3://``, ``memory://`` ...

- :func:`local_input` gives a local file for any input URL, so media code only ever sees plain local
  paths -- never a user's URL. It is the trusting way in of the CLI and batch (their user owns the
  machine): local paths are used in place, http(s) is downloaded by :mod:`bgservice.io.fetch`'s pinned
  client (caps and deadline, no address rule), other fsspec URLs are copied into scratch with a size cap.
  With ``service="video"|"image"`` it applies the service's rules for a stranger's URL instead
  (:func:`bgservice.io.fetch.fetch_to_local`: no local paths, http(s) to public addresses only, object
  stores under ``BGSERVICE_ALLOWED_INPUT_PREFIXES``). A remote source that cannot be read is
  ``fetch_failed``, never ``invalid_input``.
- :func:`publish` puts a finished local file at the output URL atomically: a local output is written
  beside its target and renamed into place; a remote one is uploaded in one ``put`` (S3 completes a
  multipart upload atomically), so a failed job never leaves a partial object at the output key.
- :func:`scratch_dir` is the job's temporary directory, removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import fsspec

from bgservice.errors import BgServiceError, EncodeFailed, InvalidInput, InvalidOutput
from bgservice.io.fetch import fetch_to_local, open_trusted
from bgservice.io.paths import (
    OBJECT_STORE_PROTOCOLS,
    is_local,
    is_object_store_url,
    local_path,
    scratch_dir,
    split_protocol,
)
from bgservice.settings import Settings

__all__ = [
    "OBJECT_STORE_PROTOCOLS",
    "check_output_url",
    "is_local",
    "is_object_store_url",
    "local_input",
    "local_path",
    "publish",
    "scratch_dir",
    "split_protocol",
]


@contextlib.contextmanager
def local_input(
    url: str,
    settings: Settings,
    *,
    max_bytes: int | None = None,
    limit_name: str = "BGSERVICE_MAX_INPUT_BYTES",
    error: type[BgServiceError] = InvalidInput,
    what: str = "input",
    service: Literal["video", "image"] | None = None,
    field: str | None = None,
) -> Iterator[str]:
    """Yield a local path holding the bytes at ``url``; remote files are copied into scratch first.

    A missing local file -> ``error`` (InvalidInput by default); a remote one that cannot be read ->
    FetchFailed; larger than ``max_bytes`` (default ``settings.max_input_bytes``) -> InputTooLarge,
    naming the setting ``limit_name``. ``service="video"`` / ``"image"``: a stranger's URL, under the
    service's rules and that kind's cap (``url_not_allowed`` naming ``field``).
    """
    if service is not None:
        with fetch_to_local(url, settings, kind=service, field=field) as path:
            yield path
        return
    with open_trusted(
        url, settings, max_bytes=max_bytes, limit_name=limit_name, error=error, what=what
    ) as path:
        yield path


def publish(local_file: str | Path, output_url: str) -> None:
    """Put ``local_file`` at ``output_url``, all or nothing. The local file is consumed."""
    src = Path(local_file)
    try:
        if is_local(output_url):
            target = local_path(output_url).absolute()
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
            try:
                shutil.move(str(src), partial)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
            return
        fs, path_in_fs = fsspec.core.url_to_fs(output_url)
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        parent = path_in_fs.rsplit("/", 1)[0] if "/" in path_in_fs else ""
        if parent and not protocols & OBJECT_STORE_PROTOCOLS:  # never create buckets as a side effect
            fs.makedirs(parent, exist_ok=True)
        fs.put_file(str(src), path_in_fs)
    except OSError as exc:
        raise EncodeFailed(f"cannot write the output to {output_url}: {exc}") from exc
    finally:
        src.unlink(missing_ok=True)


def check_output_url(output_url: str) -> None:
    """Fail early (before any work) when the output URL's protocol is unknown or it names a directory."""
    if is_local(output_url):
        target = local_path(output_url)
        if target.is_dir():
            raise InvalidOutput(f"output is a directory: {output_url}")
        return
    try:
        fsspec.core.url_to_fs(output_url)
    except (ValueError, ImportError) as exc:
        raise InvalidOutput(f"unsupported output URL {output_url!r}: {exc}") from exc
