"""The error tree. Every error a user can see carries a stable ``code``.

::

    BgServiceError                      (code "internal", exit 1)
    ├── UserError                       (exit 2: the request is at fault; HTTP 4xx later)
    │   ├── InvalidInput                invalid_input             empty, not a video, corrupt or truncated,
    │   │                                                         no video stream, undecodable codec
    │   ├── InvalidTrim                 invalid_trim              malformed time, negative, start >= duration,
    │   │                                                         end <= start
    │   ├── InvalidBackground           invalid_background        bad hex colour, colour and image together
    │   ├── InvalidBackgroundImage      invalid_background_image  unreadable or unsupported image
    │   ├── InputTooLarge               input_too_large           over a BGSERVICE_MAX_* limit
    │   ├── InvalidOutput               invalid_output            unusable output (a directory, unknown URL)
    │   ├── InvalidManifest             invalid_manifest          a batch manifest or line that cannot be read
    │   └── InvalidSettings             invalid_settings          a malformed BGSERVICE_* variable
    ├── InternalError                   internal                  anything unexpected
    ├── DecodeFailed                    decode_failed             the decoder stage died (process lost, ...)
    ├── EncodeFailed                    encode_failed             the encoder / muxer / upload stage failed
    └── JobCancelled                    cancelled                 the job was cancelled by its owner

The codes are a public contract (CLI ``error: <code>: <message>``, job ``error.code``): never rename one.

Every class pickles with its message and code intact, so an error raised inside a Ray actor reaches the
driver as the same class (Ray wraps it in ``RayTaskError``; :func:`unwrap` digs it out).
"""

from __future__ import annotations

from typing import Any, ClassVar


class BgServiceError(Exception):
    """Base of every error this project raises on purpose."""

    code: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message or self.code.replace("_", " ")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,))

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class UserError(BgServiceError):
    """The input or the request is at fault; retrying the same request fails the same way."""

    exit_code: ClassVar[int] = 2


class InvalidInput(UserError):
    code = "invalid_input"


class InvalidTrim(UserError):
    code = "invalid_trim"


class InvalidBackground(UserError):
    code = "invalid_background"


class InvalidBackgroundImage(UserError):
    code = "invalid_background_image"


class InputTooLarge(UserError):
    code = "input_too_large"


class InvalidOutput(UserError):
    code = "invalid_output"


class InvalidManifest(UserError):
    code = "invalid_manifest"


class InvalidSettings(UserError):
    code = "invalid_settings"


class InternalError(BgServiceError):
    code = "internal"


class DecodeFailed(BgServiceError):
    code = "decode_failed"


class EncodeFailed(BgServiceError):
    code = "encode_failed"


class JobCancelled(BgServiceError):
    code = "cancelled"
    exit_code: ClassVar[int] = 130


ALL_CODES: tuple[str, ...] = (
    InvalidInput.code,
    InvalidTrim.code,
    InvalidBackground.code,
    InvalidBackgroundImage.code,
    InputTooLarge.code,
    InvalidOutput.code,
    InvalidManifest.code,
    InvalidSettings.code,
    InternalError.code,
    DecodeFailed.code,
    EncodeFailed.code,
    JobCancelled.code,
)


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
