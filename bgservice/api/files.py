"""The service's storage root (``BGSERVICE_STORAGE_URL``): where results and uploaded assets live.

::

    <root>/<folder_id>/<job_id>.<ext>    a result (its *key* is ``<folder_id>/<job_id>.<ext>``: .mp4, .webm
                                         or .mov, by the job's output format)
    <root>/assets/<asset_id>             an uploaded asset

The root is a local directory (default ``<data dir>/storage``) or ``s3://bucket/prefix`` through s3fs
(``BGSERVICE_S3_ENDPOINT_URL`` for S3-compatible stores: MinIO, Ceph, moto). Every process of the service
(replicas, the runner, the Segmenter pool's encoders) must reach the same root: on a cluster, use S3.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec

from bgservice.settings import Settings
from bgservice.spec import DEFAULT_FORMAT, OUTPUT_FORMATS, FormatInfo
from bgservice.storage import is_local, local_path


def apply_endpoint(settings: Settings) -> None:
    """Point botocore (s3fs, and so every fsspec ``s3://`` open in this process and the Ray workers it
    starts) at ``BGSERVICE_S3_ENDPOINT_URL``."""
    if settings.s3_endpoint_url:
        os.environ.setdefault("AWS_ENDPOINT_URL_S3", settings.s3_endpoint_url)


def storage_root(settings: Settings) -> str:
    if settings.storage_url:
        root = settings.storage_url.rstrip("/")
        return str(local_path(root).expanduser().absolute()) if is_local(root) else root
    base = Path(getattr(settings, "data_dir", Path.home() / ".local" / "share" / "bgservice"))
    return str((base / "storage").absolute())


def is_local_root(settings: Settings) -> bool:
    return is_local(storage_root(settings))


def url_of(settings: Settings, key: str) -> str:
    """The storage URL (or local path) of a key under the root."""
    return f"{storage_root(settings)}/{key}"


def result_key(folder: str, job_id: str, output_format: str | None = None) -> str:
    """``{folder}/{job_id}{ext}``: the extension follows the format (``OUTPUT_FORMATS``)."""
    return f"{folder}/{job_id}{format_info(output_format).extension}"


def format_info(output_format: str | None) -> FormatInfo:
    return OUTPUT_FORMATS.get(output_format or DEFAULT_FORMAT, OUTPUT_FORMATS[DEFAULT_FORMAT])


def spec_format(spec: dict[str, Any] | None) -> str:
    """The output format a stored job spec (``JobSpec.to_dict``) asked for (jobs from before: mp4)."""
    value = (spec or {}).get("output_format")
    return value if isinstance(value, str) and value in OUTPUT_FORMATS else DEFAULT_FORMAT


def content_type_of_key(key: str) -> str:
    """What a result file is served as, by its key's extension."""
    for info in OUTPUT_FORMATS.values():
        if key.endswith(info.extension):
            return info.content_type
    return "application/octet-stream"


def asset_key(asset_id: str) -> str:
    return f"assets/{asset_id}"


def filesystem(settings: Settings) -> tuple[Any, str]:
    """The fsspec filesystem of the root and the root's path inside it."""
    root = storage_root(settings)
    if is_local(root):
        return fsspec.filesystem("file"), root
    opts: dict[str, Any] = {}
    if settings.s3_endpoint_url and root.startswith(("s3://", "s3a://")):
        opts["client_kwargs"] = {"endpoint_url": settings.s3_endpoint_url}
    fs, path = fsspec.core.url_to_fs(root, **opts)
    return fs, str(path)


def remove(settings: Settings, key: str) -> bool:
    """Delete the object at ``key``; ``False`` when it was not there."""
    fs, root = filesystem(settings)
    path = f"{root}/{key}"
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        return False
    return True


def exists(settings: Settings, key: str) -> bool:
    fs, root = filesystem(settings)
    try:
        return bool(fs.exists(f"{root}/{key}"))
    except OSError:
        return False


def local_file(settings: Settings, key: str) -> Path | None:
    """The file of ``key`` under a local root (``None`` for a remote root, or a key leaving the root)."""
    root = storage_root(settings)
    if not is_local(root):
        return None
    base = Path(root).resolve()
    path = (base / key).resolve()
    if base not in path.parents:
        return None
    return path


def put(settings: Settings, local: Path, key: str) -> None:
    """Move a finished local file to ``key`` (atomic on a local root; one put on S3)."""
    from bgservice.storage import publish

    publish(local, url_of(settings, key))


def presign(settings: Settings, key: str, ttl: int) -> str:
    fs, root = filesystem(settings)
    return str(fs.sign(f"{root}/{key}", expiration=ttl))
