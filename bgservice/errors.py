"""The error tree. Every error a user can see carries a stable ``code``.

::

    BgServiceError                        internal                  500  exit 1
    ├── UserError                         the request is at fault: 4xx, exit 2 (a retry fails the same way)
    │   ├── InvalidRequest                invalid_request           422
    │   ├── InvalidInput                  invalid_input             422
    │   ├── InvalidTrim                   invalid_trim              422
    │   ├── InvalidBackground             invalid_background        422
    │   ├── InvalidBackgroundImage        invalid_background_image  422
    │   ├── InvalidBackgroundVideo        invalid_background_video  422
    │   ├── InvalidAsset                  invalid_asset             422
    │   ├── UrlNotAllowed                 url_not_allowed           422
    │   ├── InputTooLarge                 input_too_large           413
    │   ├── InvalidOutput                 invalid_output            422
    │   ├── InvalidManifest               invalid_manifest          422
    │   ├── Unauthorized                  unauthorized              401
    │   ├── Forbidden                     forbidden                 403
    │   ├── NotFound                      not_found                 404
    │   ├── JobNotCancellable             job_not_cancellable       409
    │   ├── IdempotencyKeyInUse           idempotency_key_in_use    409
    │   └── IdempotencyKeyMismatch        idempotency_key_mismatch  422
    ├── InvalidSettings                   invalid_settings          500  exit 2 (the operator's fault)
    ├── InternalError                     internal                  500  exit 1
    ├── FetchFailed                       fetch_failed              502  exit 1 (a retry may succeed)
    ├── DecodeFailed                      decode_failed             500  exit 1
    ├── EncodeFailed                      encode_failed             500  exit 1
    ├── JobTimeout                        timeout                   504  exit 1
    ├── RateLimited                       rate_limited              429  exit 1 (Retry-After)
    ├── ServiceUnavailable                service_unavailable       503  exit 1
    └── JobCancelled                      cancelled                 409  exit 130

Each class's ``summary`` says when it is raised.

The codes are a public contract (CLI ``error: <code>: <message>``, HTTP ``{"error": {"code", ...}}``, job
``error.code``): never rename one. :data:`TABLE` is the one mapping code -> HTTP status -> CLI exit; the
README prints it (``python -m bgservice.errors`` renders it as Markdown).

Every class pickles with its message, code and ``field`` intact, so an error raised inside a Ray actor
reaches the driver as the same class (Ray wraps it in ``RayTaskError``; :func:`unwrap` digs it out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class BgServiceError(Exception):
    """Base of every error this project raises on purpose."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1
    summary: ClassVar[str] = "anything unexpected"

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message or self.code.replace("_", " ")
        self.field = field  # the request field at fault (HTTP answers name it), when there is one

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.field, self._extra()))

    def _extra(self) -> dict[str, Any]:
        return {}

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


def _rebuild(cls: type[BgServiceError], message: str, field: str | None, extra: dict[str, Any]) -> Any:
    err = cls(message, field=field)
    for name, value in extra.items():
        setattr(err, name, value)
    return err


class UserError(BgServiceError):
    """The input or the request is at fault; retrying the same request fails the same way."""

    http_status: ClassVar[int] = 422
    exit_code: ClassVar[int] = 2


class InvalidRequest(UserError):
    code = "invalid_request"
    summary = "a malformed request: an unknown field, a wrong type, a value out of range"


class InvalidInput(UserError):
    code = "invalid_input"
    summary = (
        "the input is missing, empty, not a video, corrupt or truncated, has no video stream, "
        "or uses a codec that cannot be decoded"
    )


class InvalidTrim(UserError):
    code = "invalid_trim"
    summary = (
        "a malformed or negative time, start at or after the end of the video, end at or before start, "
        "or no frame in the window"
    )


class InvalidBackground(UserError):
    code = "invalid_background"
    summary = "a bad hex colour, or more than one background given"


class InvalidBackgroundImage(UserError):
    code = "invalid_background_image"
    summary = "the background image is missing, unreadable, or not JPEG/PNG/WebP"


class InvalidBackgroundVideo(UserError):
    code = "invalid_background_video"
    summary = "the background video is missing or cannot be decoded"


class InvalidAsset(UserError):
    code = "invalid_asset"
    summary = "an unknown asset id, or another key's"


class UrlNotAllowed(UserError):
    code = "url_not_allowed"
    summary = (
        "a URL the service may not fetch: a local path, file://, a chained or unlisted fsspec URL, "
        "a private / loopback / link-local address, credentials in the URL"
    )


class InputTooLarge(UserError):
    code = "input_too_large"
    http_status = 413
    summary = "over a size limit: file size, (trimmed) duration, pixels per frame, background image size"


class InvalidOutput(UserError):
    code = "invalid_output"
    summary = "the output names a directory, an unknown URL scheme, or a format its extension contradicts"


class InvalidManifest(UserError):
    code = "invalid_manifest"
    summary = "a batch manifest, or one of its lines, cannot be read"


class Unauthorized(UserError):
    code = "unauthorized"
    http_status = 401
    summary = "missing or unknown API key"


class Forbidden(UserError):
    code = "forbidden"
    http_status = 403
    summary = "a tampered or expired signed URL"


class NotFound(UserError):
    code = "not_found"
    http_status = 404
    summary = "an unknown job or file (or another key's)"


class JobNotCancellable(UserError):
    code = "job_not_cancellable"
    http_status = 409
    summary = "the job has already completed or failed"


class IdempotencyKeyInUse(UserError):
    code = "idempotency_key_in_use"
    http_status = 409
    summary = "a request with the same Idempotency-Key is still being accepted"


class IdempotencyKeyMismatch(UserError):
    code = "idempotency_key_mismatch"
    summary = "the Idempotency-Key was already used for a different request"


class InvalidSettings(BgServiceError):
    """A malformed ``BGSERVICE_*`` variable: the operator's fault, found before any work starts."""

    code = "invalid_settings"
    exit_code: ClassVar[int] = 2
    summary = "a BGSERVICE_* environment variable is malformed (the setting is named)"


class MissingExtra(InvalidSettings):
    """Installed without the ``cpu`` or ``gpu`` extra: no ONNX Runtime (``invalid_settings``, exit 2)."""

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(
            message
            or "onnxruntime is not installed: install the 'cpu' extra (pip install 'studio-background[cpu]') "
            "or the 'gpu' extra (pip install 'studio-background[gpu]')",
            field=field,
        )


class InternalError(BgServiceError):
    code = "internal"


class FetchFailed(BgServiceError):
    """A source could not be read: not the user's request at fault, and a retry may succeed."""

    code = "fetch_failed"
    http_status = 502
    summary = "a source could not be fetched: remote 4xx/5xx, timeout, too many redirects, storage failure"


class DecodeFailed(BgServiceError):
    code = "decode_failed"
    summary = "the decoder stage died (for example its process was lost)"


class EncodeFailed(BgServiceError):
    code = "encode_failed"
    summary = "encoding, muxing or writing the output failed"


class JobTimeout(BgServiceError):
    code = "timeout"
    http_status = 504
    summary = "the job ran longer than BGSERVICE_JOB_TIMEOUT_SECONDS"


class RateLimited(BgServiceError):
    """Too many submissions for one API key; ``retry_after`` is in whole seconds."""

    code = "rate_limited"
    http_status = 429
    summary = "too many submissions for this API key (see Retry-After)"

    def __init__(self, message: str = "", *, field: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after

    def _extra(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}


class ServiceUnavailable(BgServiceError):
    code = "service_unavailable"
    http_status = 503
    summary = "the service cannot take work now (database or Ray unreachable, shutting down)"


class JobCancelled(BgServiceError):
    code = "cancelled"
    http_status = 409
    exit_code: ClassVar[int] = 130
    summary = "the job was cancelled"


@dataclass(frozen=True)
class ErrorRow:
    code: str
    http_status: int
    exit_code: int
    error: type[BgServiceError]
    summary: str


def _all_classes() -> list[type[BgServiceError]]:
    out: list[type[BgServiceError]] = []
    todo: list[type[BgServiceError]] = [BgServiceError]
    while todo:
        cls = todo.pop(0)
        if "code" in cls.__dict__:
            out.append(cls)
        todo[:0] = cls.__subclasses__()  # depth first: the user errors come first, as in the tree
    return out


def _table() -> dict[str, ErrorRow]:
    rows: dict[str, ErrorRow] = {}
    for cls in _all_classes():
        if cls is BgServiceError:
            continue
        if cls.code in rows:
            raise AssertionError(f"two error classes share the code {cls.code!r}")
        rows[cls.code] = ErrorRow(cls.code, cls.http_status, cls.exit_code, cls, cls.summary)
    return rows


TABLE: dict[str, ErrorRow] = _table()
"""The one table: code -> HTTP status, CLI exit, class. Built from the classes, so it cannot drift."""

ALL_CODES: tuple[str, ...] = tuple(TABLE)


def from_code(code: str, message: str = "", *, field: str | None = None) -> BgServiceError:
    """The project error for a code (clients re-raise API errors as their own class); unknown -> internal."""
    row = TABLE.get(code)
    cls = row.error if row is not None else InternalError
    return cls(message, field=field)


def unwrap(exc: BaseException) -> BaseException:
    """The project error inside Ray's wrappers (``RayTaskError.cause``) or a ``__cause__`` chain; without
    one, the innermost exception of that chain (what actually went wrong, not its wrapper)."""
    seen: set[int] = set()
    cur: BaseException = exc
    while id(cur) not in seen:
        if isinstance(cur, BgServiceError):
            return cur
        seen.add(id(cur))
        nxt = getattr(cur, "cause", None)
        if not isinstance(nxt, BaseException):
            nxt = cur.__cause__
        if nxt is None:
            break
        cur = nxt
    return cur


def as_service_error(exc: BaseException) -> BgServiceError:
    """Map any exception to a project error; unknown ones become ``internal`` with the type name only."""
    inner = unwrap(exc)
    if isinstance(inner, BgServiceError):
        return inner
    return InternalError(f"{type(inner).__name__}: {inner}")


def markdown_table() -> str:
    """The README's error table, rendered from :data:`TABLE`."""
    lines = ["| code | HTTP | exit | when |", "| --- | --- | --- | --- |"]
    for row in TABLE.values():
        lines.append(f"| `{row.code}` | {row.http_status} | {row.exit_code} | {row.summary} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
