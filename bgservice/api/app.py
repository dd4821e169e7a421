"""The FastAPI application: routes only. Each route authenticates, hands the work to a small module
(:mod:`.submit`, :mod:`.views`, :mod:`.assets`, :mod:`.signing`) and declares a response model for every
status it can answer (the OpenAPI document is generated from them).

The app never runs a job: a submit writes a ``queued`` record and returns; the runner (a detached Ray
actor, :mod:`bgservice.jobs.runner`) claims it.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgservice import __version__
from bgservice.api import (
    assets,
    docs,
    errors,
    files,
    idempotency,
    metrics,
    prefer,
    results,
    signing,
    submit,
    views,
    webhooks,
)
from bgservice.api.auth import Caller
from bgservice.api.models import (
    Accepted,
    Asset,
    ErrorResponse,
    Health,
    Job,
    JobList,
    JobRef,
    Readiness,
    SubmitRequest,
    WebhookSecret,
)
from bgservice.api.service import MAX_JSON_BYTES, Service
from bgservice.errors import InputTooLarge, InvalidRequest, NotFound, RateLimited, ServiceUnavailable
from bgservice.jobs.record import JobRecord, JobState
from bgservice.spec import OUTPUT_FORMATS

log = logging.getLogger("bgservice.api")

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


# what a result is served as (the key's extension follows the job's outputFormat)
_RESULT_CONTENT: dict[str, Any] = {
    ct: {"schema": {"type": "string", "format": "binary"}}
    for ct in dict.fromkeys(info.content_type for info in OUTPUT_FORMATS.values())
}


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: _err("missing or unknown API key (`unauthorized`)")}


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _caller(request: Request, take: bool) -> Caller:
    service = _service(request)
    caller = service.keys.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))
    request.state.caller = caller
    if take:
        bucket = await run_in_threadpool(service.limiter.take, caller.key_id)
    else:
        bucket = await run_in_threadpool(service.limiter.peek, caller.key_id)
    request.state.extra_headers = bucket.headers()
    if not bucket.allowed:
        raise RateLimited(
            f"more than {bucket.quota} submissions per minute for this API key",
            retry_after=bucket.retry_after,
        )
    return caller


async def authenticated(
    request: Request,
    _b: Annotated[Any, Security(_bearer)] = None,
    _k: Annotated[Any, Security(_api_key)] = None,
) -> Caller:
    return await _caller(request, take=False)


async def submitter(
    request: Request,
    _b: Annotated[Any, Security(_bearer)] = None,
    _k: Annotated[Any, Security(_api_key)] = None,
) -> Caller:
    return await _caller(request, take=True)


CallerDep = Annotated[Caller, Depends(authenticated)]
JobId = Annotated[str, Path(description="the job's id (a uuid4)", max_length=64)]


class _Edge:
    """Pure ASGI middleware: adds the rate-limit headers the auth step left in ``scope["state"]`` to
    every answer (errors included) and logs one line per request (with the job id when there is one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = {"code": 500}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                state = scope.get("state") or {}
                extra = state.get("extra_headers") or {}
                if state.get("deprecated"):
                    extra = {**extra, "Deprecation": submit.DEPRECATION}
                if extra:
                    headers = list(message.get("headers", []))
                    have = {k.lower() for k, _ in headers}
                    for name, value in extra.items():
                        if name.lower().encode() not in have:
                            headers.append((name.lower().encode(), value.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            state = scope.get("state") or {}
            job = state.get("job_id")
            log.info(
                "%s %s %s %.1fms%s",
                scope.get("method"),
                scope.get("path"),
                status["code"],
                (time.monotonic() - started) * 1000,
                f" job={job}" if job else "",
            )


async def _read_json(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise InputTooLarge(f"the JSON body is {declared} bytes, the limit is {MAX_JSON_BYTES}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise InputTooLarge(f"the JSON body is over the limit of {MAX_JSON_BYTES} bytes")
    return bytes(body)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def create_app(service: Service) -> FastAPI:
    """The app around one :class:`Service` (settings, store, keys, limiter, secret)."""
    settings = service.settings
    app = FastAPI(
        title="studio-background",
        version=__version__,
        summary="Remove or replace the background of videos: submit, poll, download.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    errors.install(app)
    docs.install(app)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["Location", "RateLimit", "RateLimit-Policy", "Retry-After", "Deprecation"],
        )
    app.add_middleware(_Edge)
    _routes(app)
    _declare_errors(app)
    from bgservice import web

    web.mount(app)  # the web page at / and its assets under /web/
    return app


def _declare_errors(app: FastAPI) -> None:
    """FastAPI declares its own 422 body (``HTTPValidationError``) for every route with parameters; this
    service answers validation errors with its one error envelope, so the document says that instead."""
    from fastapi.openapi.utils import get_openapi

    ref = {"$ref": "#/components/schemas/ErrorResponse"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.setdefault("responses", {}).setdefault(
                    "500",
                    {
                        "description": "an unexpected failure (`internal`): never a traceback",
                        "content": {"application/json": {"schema": ref}},
                    },
                )
                answer = operation.get("responses", {}).get("422")
                if answer is None:
                    continue
                media = answer.setdefault("content", {}).setdefault("application/json", {})
                if "HTTPValidationError" in str(media.get("schema", "")):
                    media["schema"] = ref
                    answer["description"] = "a malformed parameter (`invalid_request`, with the field)"
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _routes(app: FastAPI) -> None:
    @app.post(
        "/v1/proxy/studio-background",
        status_code=202,
        response_model=Accepted,
        tags=["jobs"],
        summary="Submit a job",
        description=(
            "Queue a job and return at once (`Location: /v2/jobs/<id>`). `videoUrl` is required; "
            "`back_ground` (a colour) or `imageUrl` (an image) replaces the background, neither removes it "
            "(subject over white). The deprecated aliases `input_url` and `background` are accepted; the "
            "answer then carries `Deprecation: @1777420800`. JSON bodies over 64 KiB are refused (413). "
            "Every submit attempt takes a token from the key's bucket."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SubmitRequest.model_json_schema()}},
            }
        },
        responses={
            200: {
                "model": Job,
                "description": "`Prefer: wait=N` (N ≤ 60) and the job ended within N seconds: the job",
                "headers": {
                    "Preference-Applied": {"description": "wait=N", "schema": {"type": "string"}},
                    "Location": {"description": "/v2/jobs/<id>", "schema": {"type": "string"}},
                },
            },
            202: {"headers": {"Location": {"description": "/v2/jobs/<id>", "schema": {"type": "string"}}}},
            **AUTH_ERRORS,
            413: _err("the JSON body is over 64 KiB (`input_too_large`)"),
            422: _err(
                "`invalid_request`, `invalid_background`, `invalid_trim`, `invalid_asset` or "
                "`url_not_allowed`, with the field at fault"
            ),
            429: {
                **_err("`rate_limited`: see Retry-After"),
                "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
            },
        },
    )
    async def submit_job(
        request: Request, response: Response, caller: Annotated[Caller, Depends(submitter)]
    ) -> Accepted | JSONResponse:
        raw = await _read_json(request)
        service = _service(request)
        request.state.deprecated = submit.uses_alias(raw)
        sub = await run_in_threadpool(submit.build, raw, service, caller)
        request.state.deprecated = sub.deprecated
        base_url = _base_url(request)

        def accept() -> None:
            if sub.request.callbackUrl:  # bgservice/api/webhooks.py: delivered when the job ends
                webhooks.register(
                    service.writer, caller.key_id, sub.job_id, sub.request.callbackUrl, base_url
                )
            submit.enqueue(sub, service, caller)

        key = request.headers.get(idempotency.HEADER)
        if key is None:
            await run_in_threadpool(accept)
        else:  # bgservice/api/idempotency.py: the same key and request -> the same job, never a second
            key = idempotency.check_key(key)
            digest = idempotency.request_hash(sub.request.model_dump(mode="json"))
            claim = await run_in_threadpool(idempotency.claim, service.writer, caller.key_id, key, digest)
            if claim.job_id is not None:
                sub.job_id = claim.job_id
            else:
                try:
                    await run_in_threadpool(accept)
                except BaseException:
                    await run_in_threadpool(idempotency.release, service.writer, caller.key_id, key)
                    raise
                await run_in_threadpool(idempotency.complete, service.writer, caller.key_id, key, sub.job_id)
        request.state.job_id = sub.job_id
        response.headers["Location"] = f"/v2/jobs/{sub.job_id}"
        wait = prefer.wait_seconds(request.headers.get(prefer.HEADER))
        if wait:  # bgservice/api/prefer.py: Prefer: wait=N -> 200 with the job if it ends in time
            job_id, owner = sub.job_id, caller.key_id
            record, ended = await prefer.wait_for_end(lambda: service.store.get(job_id, owner=owner), wait)
            if ended and record is not None:
                view = await run_in_threadpool(views.job_view, service, record, _base_url(request))
                headers = {"Location": f"/v2/jobs/{job_id}", prefer.APPLIED: f"wait={wait}"}
                return JSONResponse(view.model_dump(mode="json"), status_code=200, headers=headers)
        return Accepted(job=JobRef(id=sub.job_id, status="queued"))

    @app.get(
        "/v2/jobs/{job_id}",
        response_model=Job,
        tags=["jobs"],
        summary="A job",
        description=(
            "The job; when completed, `result_data.url` is signed afresh at every call. With "
            "`Prefer: wait=N` (N ≤ 60) the answer waits up to N seconds for the job to end; if it does, "
            "the answer carries `Preference-Applied: wait=N`."
        ),
        responses={**AUTH_ERRORS, 404: _err("unknown job, or another key's (`not_found`)")},
    )
    async def get_job(request: Request, job_id: JobId, caller: CallerDep) -> Job | JSONResponse:
        service = _service(request)
        request.state.job_id = job_id
        owner = caller.key_id

        def read() -> JobRecord | None:
            return service.store.get(job_id, owner=owner)

        record = await run_in_threadpool(read)
        if record is None:
            raise NotFound(f"no job {job_id!r}")
        wait = prefer.wait_seconds(request.headers.get(prefer.HEADER))
        ended = False
        if wait:  # bgservice/api/prefer.py: hold the answer up to N s for the job to end
            latest, ended = await prefer.wait_for_end(read, wait)
            if latest is None:
                raise NotFound(f"no job {job_id!r}")
            record = latest
        view = await run_in_threadpool(views.job_view, service, record, _base_url(request))
        if ended:
            return JSONResponse(view.model_dump(mode="json"), headers={prefer.APPLIED: f"wait={wait}"})
        return view

    @app.get(
        "/v2/jobs",
        response_model=JobList,
        tags=["jobs"],
        summary="The calling key's jobs, newest first",
        responses={**AUTH_ERRORS, 422: _err("a bad `status`, `limit` or `cursor` (`invalid_request`)")},
    )
    def list_jobs(
        request: Request,
        caller: CallerDep,
        status: Annotated[
            Literal["queued", "running", "completed", "failed", "cancelled"] | None, Query()
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> JobList:
        service = _service(request)
        states = [JobState(status)] if status else None
        try:
            records, next_cursor = service.store.list_jobs(
                owner=caller.key_id, states=states, limit=limit, cursor=cursor or None
            )
        except ValueError:
            raise InvalidRequest("the cursor cannot be read", field="cursor") from None
        return JobList(jobs=views.job_views(service, records, _base_url(request)), next_cursor=next_cursor)

    @app.delete(
        "/v2/jobs/{job_id}",
        status_code=202,
        response_model=Job,
        tags=["jobs"],
        summary="Cancel a job",
        description=(
            "A queued job is cancelled at once; a running one ends `cancelled` shortly after. "
            "Cancelling a cancelled job answers 202 again; a completed or failed one is 409."
        ),
        responses={
            **AUTH_ERRORS,
            404: _err("unknown job, or another key's (`not_found`)"),
            409: _err("the job has already completed or failed (`job_not_cancellable`)"),
        },
    )
    def cancel_job(request: Request, job_id: JobId, caller: CallerDep) -> Job:
        service = _service(request)
        request.state.job_id = job_id
        record = service.store.cancel(job_id, owner=caller.key_id)
        return views.job_view(service, record, _base_url(request))

    @app.delete(
        "/v2/jobs/{job_id}/result",
        status_code=204,
        response_class=Response,
        tags=["jobs"],
        summary="Delete a job's result now",
        responses={
            **AUTH_ERRORS,
            404: _err("unknown job, another key's, or a job with no result (`not_found`)"),
        },
    )
    def delete_result(request: Request, job_id: JobId, caller: CallerDep) -> Response:
        service = _service(request)
        request.state.job_id = job_id
        record = service.store.get(job_id, owner=caller.key_id)
        if record is None:
            raise NotFound(f"no job {job_id!r}")
        if record.state != JobState.COMPLETED:
            raise NotFound(f"job {job_id} has no result (it is {record.state.value})")
        results.delete(service, record)
        return Response(status_code=204)

    @app.post(
        "/v1/assets",
        status_code=201,
        response_model=Asset,
        tags=["assets"],
        summary="Upload a video or a background image",
        description=(
            "multipart/form-data with the file in the part `file`, streamed to storage and capped by "
            "`BGSERVICE_MAX_INPUT_BYTES` (413). A video, or a JPEG/PNG/WebP image; anything else is 422 "
            "`invalid_input`. The returned `asset_id` is accepted as `videoUrl` or `imageUrl`."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    }
                },
            }
        },
        responses={
            **AUTH_ERRORS,
            413: _err("over BGSERVICE_MAX_INPUT_BYTES (`input_too_large`)"),
            422: _err("not a video or a JPEG/PNG/WebP image (`invalid_input`), or no `file` part"),
        },
    )
    async def upload_asset(request: Request, caller: CallerDep) -> Asset:
        service = _service(request)
        scratch = assets.scratch(service.settings)
        try:
            path, size = await assets.receive_upload(request, service.settings, scratch)
            kind, content_type = await run_in_threadpool(assets.probe_upload, path, service.settings)
            row = await run_in_threadpool(
                assets.store_upload,
                service.writer,
                service.settings,
                caller.key_id,
                path,
                size,
                kind,
                content_type,
            )
        finally:
            assets.drop_scratch(scratch)
        return Asset(
            asset_id=row.id,
            content_type=row.content_type,
            size_bytes=row.size_bytes,
            expires_at=views.rfc3339(row.expires_at),
        )

    @app.delete(
        "/v1/assets/{asset_id}",
        status_code=204,
        response_class=Response,
        tags=["assets"],
        summary="Delete an asset",
        responses={**AUTH_ERRORS, 404: _err("unknown asset, or another key's (`not_found`)")},
    )
    def delete_asset(
        request: Request, asset_id: Annotated[str, Path(max_length=64)], caller: CallerDep
    ) -> Response:
        service = _service(request)
        assets.remove(service.engine, service.writer, service.settings, asset_id, caller.key_id)
        return Response(status_code=204)

    @app.get(
        "/v2/files/{key:path}",
        tags=["files"],
        summary="Download a result (signed URL, local storage)",
        description=(
            "The URL comes from `result_data.url`; it is signed (HMAC-SHA256) and expires. HTTP Range "
            "requests are answered 206."
        ),
        response_class=FileResponse,
        responses={
            200: {"content": _RESULT_CONTENT},
            206: {"description": "the requested range", "content": _RESULT_CONTENT},
            400: {
                "description": "a malformed Range header",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            403: _err("a tampered or expired URL (`forbidden`)"),
            404: _err("the result is gone (`not_found`)"),
            416: {
                "description": "a Range past the file's end",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        },
    )
    def get_file(
        request: Request,
        key: str,
        expires: Annotated[str | None, Query(max_length=20)] = None,
        signature: Annotated[str | None, Query(max_length=128)] = None,
    ) -> FileResponse:
        service = _service(request)
        signing.verify(service.secret, key, expires, signature)
        path = files.local_file(service.settings, key)
        if path is None or not path.is_file():
            raise NotFound("the result is gone")
        return FileResponse(
            path,
            media_type=files.content_type_of_key(key),
            filename=path.name,
            content_disposition_type="inline",
        )

    @app.get(
        "/v1/webhooks/secret",
        response_model=WebhookSecret,
        tags=["webhooks"],
        summary="The key's webhook signing secret",
        description="`whsec_…` (Standard Webhooks): verify `webhook-signature` = `v1,` + base64 "
        "HMAC-SHA256 of `webhook-id.webhook-timestamp.body` under the base64-decoded part after `whsec_`.",
        responses={**AUTH_ERRORS},
    )
    def webhook_secret(request: Request, caller: CallerDep) -> WebhookSecret:
        service = _service(request)
        return WebhookSecret(secret=webhooks.secret_for(service.engine, service.writer, caller.key_id))

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        description="Prometheus text format. Job figures read from the database at scrape time (every "
        "replica answers the same: `bgservice_jobs{state}`, `bgservice_jobs_failed{code}`, "
        "`bgservice_queue_depth`, `bgservice_queue_oldest_seconds`, `bgservice_queue_wait_seconds`, "
        "`bgservice_job_duration_seconds`, `bgservice_billed_seconds_total`); the job runner's figures, "
        "asked at scrape time (`bgservice_runner_up`, `bgservice_frames_processed_total`, "
        "`bgservice_fetched_bytes_total`, `bgservice_segmenter_pool_size`, "
        "`bgservice_segmenter_pool_busy`; a runner that does not answer within 2 s gives "
        "`bgservice_runner_up 0` and no runner figures); then this replica's own counters "
        "(`bgservice_webhook_deliveries_total{outcome}`). No API key: scrape it from inside the cluster.",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics_route(request: Request) -> Response:
        service = _service(request)
        body = await run_in_threadpool(metrics.scrape, service.engine, service.settings)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    @app.get("/healthz", response_model=Health, tags=["health"], summary="Alive")
    def healthz() -> Health:
        return Health()

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["health"],
        summary="Ready: the database, Ray and the runner are reachable",
        responses={503: _err("something the service needs is not reachable (`service_unavailable`)")},
    )
    def readyz(request: Request) -> Readiness:
        service = _service(request)
        database = ray_ok = runner = False
        try:
            service.store.counts()
            database = True
        except Exception as exc:
            log.warning("readyz: database: %s", exc)
        try:
            import ray

            ray_ok = ray.is_initialized()
            from bgservice.jobs.runner import runner_alive

            runner = bool(ray_ok and runner_alive(service.settings))
        except Exception as exc:
            log.warning("readyz: ray/runner: %s", exc)
        if not (database and ray_ok and runner):
            missing = [n for n, ok in (("database", database), ("ray", ray_ok), ("runner", runner)) if not ok]
            raise ServiceUnavailable(f"not ready: {', '.join(missing)} not reachable")
        return Readiness(database=database, ray=ray_ok, runner=runner)
