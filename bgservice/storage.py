"""Files in and out through fsspec: local paths, ``file://``, ``s3://``, ``memory://`` ...

- :func:`local_input` gives a local file for any input URL (remote ones are streamed into scratch with a
  size cap), so media code only ever sees plain local paths — never a user's URL.
- :func:`publish` puts a finished local file at the output URL atomically: a local output is written
  beside its target and renamed into place; a remote one is uploaded in one ``put`` (S3 completes a
  multipart upload atomically), so a failed job never leaves a partial object at the output key.
- :func:`scratch_dir` is the job's temporary directory, removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec

from bgservice.errors import BgServiceError, EncodeFailed, InputTooLarge, InvalidInput, InvalidOutput
from bgservice.settings import Settings

_CHUNK = 8 * 1024 * 1024
_LOCAL_PROTOCOLS = {"file", "local"}
# Object stores: reachable from every node (the DAG may place a job's decoder/encoder anywhere), and
# buckets are never created as a side effect of writing.
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


def split_protocol(url: str) -> tuple[str, str]:
    """``("s3", "bucket/key")`` for ``s3://bucket/key``; ``("file", path)`` for a plain path."""
    if "://" in url:
        protocol, _, rest = url.partition("://")
        return protocol.lower(), rest
    return "file", url


def is_local(url: str) -> bool:
    return split_protocol(url)[0] in _LOCAL_PROTOCOLS


def is_object_store_url(url: str) -> bool:
    """``s3://...``, ``gs://...``, ...: an object reachable from every node."""
    return split_protocol(url)[0] in OBJECT_STORE_PROTOCOLS


def local_path(url: str) -> Path:
    """The filesystem path of a local URL (``file:///x`` or ``/x``)."""
    protocol, rest = split_protocol(url)
    if protocol not in _LOCAL_PROTOCOLS:
        raise ValueError(f"not a local path: {url}")
    return Path(rest).expanduser()


@contextlib.contextmanager
def scratch_dir(settings: Settings, prefix: str = "bgservice-") -> Iterator[Path]:
    """A private temporary directory under ``settings.tmp_dir`` (or the system's), always removed."""
    base = settings.tmp_dir
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as exc:
        raise InvalidInput(f"unsupported URL {url!r}: {exc}") from exc
    return fs, str(path)


@contextlib.contextmanager
def local_input(
    url: str,
    settings: Settings,
    *,
    max_bytes: int | None = None,
    limit_name: str = "BGSERVICE_MAX_INPUT_BYTES",
    error: type[BgServiceError] = InvalidInput,
    what: str = "input",
) -> Iterator[str]:
    """Yield a local path holding the bytes at ``url``; remote files are copied into scratch first.

    Missing or unreadable -> ``error`` (InvalidInput by default); larger than ``max_bytes``
    (default ``settings.max_input_bytes``) -> InputTooLarge, naming the setting ``limit_name``.
    """
    limit = settings.max_input_bytes if max_bytes is None else max_bytes
    if is_local(url):
        path = local_path(url)
        if not path.is_file():
            raise error(f"{what} not found or not a file: {url}")
        size = path.stat().st_size
        if size > limit:
            raise InputTooLarge(f"{what} is {size} bytes, the limit is {limit} ({limit_name})")
        yield str(path)
        return

    fs, path_in_fs = _filesystem(url)
    try:
        info = fs.info(path_in_fs)
    except FileNotFoundError as exc:
        raise error(f"{what} not found: {url}") from exc
    except OSError as exc:
        raise error(f"{what} cannot be read: {url}: {exc}") from exc
    size = info.get("size")
    if size is not None and int(size) > limit:
        raise InputTooLarge(f"{what} is {size} bytes, the limit is {limit} ({limit_name})")
    suffix = Path(path_in_fs).suffix[:16]
    with scratch_dir(settings, prefix="bgservice-in-") as scratch:
        target = scratch / f"input{suffix}"
        copied = 0
        try:
            with fs.open(path_in_fs, "rb") as src, open(target, "wb") as dst:
                while block := src.read(_CHUNK):
                    copied += len(block)
                    if copied > limit:
                        raise InputTooLarge(f"{what} is over the limit of {limit} bytes ({limit_name})")
                    dst.write(block)
        except FileNotFoundError as exc:
            raise error(f"{what} not found: {url}") from exc
        except OSError as exc:
            raise error(f"{what} cannot be read: {url}: {exc}") from exc
        yield str(target)


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
