"""Every error the application answers is ``{"error": {"code", "message", "field"?}}`` with the HTTP status
from :data:`bgservice.errors.TABLE`; this module turns exceptions into such answers.

- a project error (:class:`~bgservice.errors.BgServiceError`) keeps its code and status;
  ``rate_limited`` adds ``Retry-After``;
- FastAPI's request validation (a wrong type, an unknown field) is ``invalid_request`` 422 with the field;
- a Starlette HTTP error (unknown route 404, wrong method 405) gets the same envelope;
- anything else is ``internal`` 500 with the exception's type only (never a traceback).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bgservice.errors import TABLE, BgServiceError, RateLimited, as_service_error

log = logging.getLogger("bgservice.api")

# What each status means when Starlette answers it (routing), mapped onto the project's codes.
_STARLETTE_CODES = {404: "not_found", 405: "invalid_request", 413: "input_too_large", 401: "unauthorized"}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"code": code, "message": message}
    if field:
        detail["field"] = field
    return {"error": detail}


def error_response(err: BgServiceError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    status = TABLE[err.code].http_status if err.code in TABLE else err.http_status
    out = dict(headers or {})
    if isinstance(err, RateLimited):
        out["Retry-After"] = str(max(1, int(err.retry_after)))
    return JSONResponse(error_body(err.code, err.message, err.field), status_code=status, headers=out)


def _field_of(loc: Sequence[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    field = _field_of(first.get("loc", ()))
    msg = str(first.get("msg", "invalid request"))
    if first.get("type") == "extra_forbidden":
        msg = f"unknown field {field!r}"
    return (f"{field}: {msg}" if field and first.get("type") != "extra_forbidden" else msg), field


async def _project_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BgServiceError)
    return error_response(exc, getattr(request.state, "extra_headers", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, field = validation_message(list(exc.errors()))
    return JSONResponse(
        error_body("invalid_request", message, field),
        status_code=422,
        headers=getattr(request.state, "extra_headers", None),
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STARLETTE_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "internal")
    message = str(exc.detail) if exc.detail else code.replace("_", " ")
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    err = as_service_error(exc)
    if not isinstance(exc, BgServiceError):
        log.exception("internal error on %s %s", request.method, request.url.path)
    return error_response(err)


def install(app: FastAPI) -> None:
    app.add_exception_handler(BgServiceError, _project_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
