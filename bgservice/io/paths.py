"""What a URL is (local path, object store, something else) and the job's scratch directory."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bgservice.settings import Settings

LOCAL_PROTOCOLS = frozenset({"file", "local"})
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
    return split_protocol(url)[0] in LOCAL_PROTOCOLS


def is_object_store_url(url: str) -> bool:
    """``s3://...``, ``gs://...``, ...: an object reachable from every node."""
    return split_protocol(url)[0] in OBJECT_STORE_PROTOCOLS


def local_path(url: str) -> Path:
    """The filesystem path of a local URL (``file:///x`` or ``/x``)."""
    protocol, rest = split_protocol(url)
    if protocol not in LOCAL_PROTOCOLS:
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
