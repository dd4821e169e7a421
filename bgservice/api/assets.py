"""Uploaded assets: ``POST /v1/assets`` streams a multipart ``file`` part to scratch (stopping at
``BGSERVICE_MAX_INPUT_BYTES`` -> 413), probes it (a JPEG/PNG/WebP image, else a decodable video, else 422
``invalid_input``) and moves it to ``<storage root>/assets/<asset_id>``.

An asset id (``asset_…``) is accepted wherever ``videoUrl`` or ``imageUrl`` is; an unknown one, another
key's, an expired one or one of the wrong kind is 422 ``invalid_asset`` naming the field. Assets expire
after ``BGSERVICE_RETENTION_HOURS``, but the sweeper keeps one while a queued or running job uses it
(``asset_uses``), so an asset never disappears under a job that has not run yet.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request

from bgservice.api import files
from bgservice.api.tables import asset_uses, assets
from bgservice.errors import InputTooLarge, InvalidAsset, InvalidInput, InvalidRequest, NotFound
from bgservice.settings import Settings

ASSET_PREFIX = "asset_"
_IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers allowed on top of the file itself


def is_asset_id(text: str) -> bool:
    return text.startswith(ASSET_PREFIX)


@dataclass(frozen=True)
class AssetRow:
    id: str
    owner: str
    key: str
    kind: str
    content_type: str
    size_bytes: int
    created_at: datetime
    expires_at: datetime


class _FilePart:
    """Collects the multipart ``file`` part into a scratch file, counting bytes against the cap."""

    def __init__(self, target: Path, limit: int) -> None:
        self.target = target
        self.limit = limit
        self.size = 0
        self.found = False
        self._out: Any = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") == b"file" and not self.found:
            self.found = True
            self._out = open(self.target, "wb")  # noqa: SIM115 - closed in _part_end / close

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._out is None:
            return
        self.size += end - start
        if self.size > self.limit:
            raise InputTooLarge(
                f"the upload is over the limit of {self.limit} bytes (BGSERVICE_MAX_INPUT_BYTES)",
                field="file",
            )
        self._out.write(data[start:end])

    def _part_end(self) -> None:
        self.close()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


async def receive_upload(request: Request, settings: Settings, scratch: Path) -> tuple[Path, int]:
    """Stream the request's multipart ``file`` part to ``scratch/upload``; its path and size."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("send the file as multipart/form-data in a part named 'file'", field="file")
    limit = settings.max_input_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + _MULTIPART_OVERHEAD:
        raise InputTooLarge(
            f"the upload is {declared} bytes, the limit is {limit} (BGSERVICE_MAX_INPUT_BYTES)", field="file"
        )
    part = _FilePart(scratch / "upload", limit)
    parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except (InputTooLarge, InvalidRequest):
        raise
    except Exception as exc:  # python-multipart's parse errors
        raise InvalidRequest(f"the multipart body cannot be read: {exc}", field="file") from None
    finally:
        part.close()
    if not part.found:
        raise InvalidRequest("the multipart body has no part named 'file'", field="file")
    if part.size == 0:
        raise InvalidInput("the uploaded file is empty", field="file")
    return part.target, part.size


def _video_content_type(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:10] == b"qt" else "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    if head[:3] == b"FLV":
        return "video/x-flv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    return "application/octet-stream"


def probe_upload(path: Path, settings: Settings) -> tuple[str, str]:
    """``(kind, content_type)``: an image (JPEG/PNG/WebP) or a video the decoder accepts; else
    ``invalid_input`` (blocking: run it in a thread)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            fmt = img.format or ""
            img.verify()
        if fmt in _IMAGE_TYPES:
            return "image", _IMAGE_TYPES[fmt]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        pass
    from bgservice.media.probe import probe

    try:
        probe(str(path), settings)
    except InvalidInput as exc:
        raise InvalidInput(
            f"the file is neither a video nor a JPEG/PNG/WebP image ({exc.message})", field="file"
        ) from None
    return "video", _video_content_type(path)


def store_upload(
    writer: Engine, settings: Settings, owner: str, path: Path, size: int, kind: str, content_type: str
) -> AssetRow:
    """Move the probed file into storage and record it (blocking)."""
    asset_id = ASSET_PREFIX + secrets.token_hex(12)
    key = files.asset_key(asset_id)
    files.put(settings, path, key)
    now = datetime.now(UTC)
    row = AssetRow(
        id=asset_id,
        owner=owner,
        key=key,
        kind=kind,
        content_type=content_type,
        size_bytes=size,
        created_at=now,
        expires_at=now + timedelta(hours=settings.retention_hours),
    )
    with writer.begin() as conn:
        conn.execute(insert(assets).values(**row.__dict__))
    return row


def scratch(settings: Settings) -> Path:
    base = settings.tmp_dir
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="bgservice-upload-", dir=base))


def drop_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def get(engine: Engine, asset_id: str, owner: str) -> AssetRow | None:
    with engine.connect() as conn:
        row = conn.execute(select(assets).where(assets.c.id == asset_id, assets.c.owner == owner)).first()
    return None if row is None else AssetRow(**row._mapping)


def resolve(engine: Engine, settings: Settings, asset_id: str, owner: str, *, field: str, kind: str) -> str:
    """The storage URL behind ``asset_id`` for a job of ``owner``; ``invalid_asset`` (naming ``field``)
    when unknown, another key's, expired or of the wrong kind."""
    row = get(engine, asset_id, owner)
    if row is None:
        raise InvalidAsset(f"unknown asset {asset_id!r}", field=field)
    if row.kind != kind:
        raise InvalidAsset(f"asset {asset_id!r} is an {row.kind}, {field} needs a {kind}", field=field)
    return files.url_of(settings, row.key)


def record_use(writer: Engine, asset_id: str, job_id: str) -> None:
    try:
        with writer.begin() as conn:
            conn.execute(insert(asset_uses).values(asset_id=asset_id, job_id=job_id))
    except IntegrityError:  # the same asset as video and image of one job
        pass


def remove(engine: Engine, writer: Engine, settings: Settings, asset_id: str, owner: str) -> None:
    """``DELETE /v1/assets/{id}``: the file and the row; unknown or another key's -> ``not_found``."""
    row = get(engine, asset_id, owner)
    if row is None:
        raise NotFound(f"no asset {asset_id!r}")
    files.remove(settings, row.key)
    with writer.begin() as conn:
        conn.execute(delete(assets).where(assets.c.id == asset_id))
        conn.execute(delete(asset_uses).where(asset_uses.c.asset_id == asset_id))
