"""The Python client for the service's HTTP API (issue 8's contract), built on httpx.

::

    from bgservice.client import Client

    with Client("http://127.0.0.1:8000", api_key) as c:
        asset = c.upload("talk.mp4")
        job = c.submit(asset.asset_id, background="#1E90FF", start=1, end="00:04.5")
        done = c.wait(job.id, progress=lambda j: print(f"{j.progress:.0%}"))
        c.download(done, "out.mp4")

- Typed results: :class:`Asset`, :class:`Accepted` (the 202 envelope), :class:`Job`, :class:`JobPage`
  (pydantic models; fields the service adds later are ignored, so an older client keeps working).
- An API error is raised as the project's own class from :mod:`bgservice.errors` by its ``code``
  (``Unauthorized``, ``InvalidBackground`` with ``field``, ``RateLimited`` with ``retry_after``, ...).
  A failure answered by something in front of the application (Ray Serve's proxy, a load balancer)
  without the JSON error body is mapped by its HTTP status.
- Retries: a 429 after its ``Retry-After``; a 5xx, a 409 ``idempotency_key_in_use`` and a connection
  error (refused, reset, dropped mid-answer, timed out) with exponential backoff and jitter, up to
  ``max_retries`` times. Every :meth:`Client.submit` sends one ``Idempotency-Key`` for all its attempts,
  so a submit whose answer was lost and is retried never makes a second job.
- Only the API key's own requests carry it: a result URL (a presigned S3 URL, or the service's signed
  ``/v2/files/...``) is fetched without it.
"""

from __future__ import annotations

import io
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal
from urllib.parse import urljoin

import httpx
from pydantic import BaseModel, ConfigDict

from bgservice.errors import BgServiceError, RateLimited, from_code

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

SUBMIT_PATH = "/v1/proxy/studio-background"
ASSETS_PATH = "/v1/assets"
JOBS_PATH = "/v2/jobs"

# What a bare HTTP status means when the answer carries no JSON error (a proxy answered, not the app).
_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "timeout",
    409: "job_not_cancellable",
    413: "input_too_large",
    422: "invalid_request",
    429: "rate_limited",
    502: "service_unavailable",
    503: "service_unavailable",
    504: "timeout",
}

_RETRYABLE_EXC = (httpx.TransportError,)  # connect/read/write errors, timeouts, dropped connections


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Asset(_Model):
    """``201`` from ``POST /v1/assets``: the id is accepted wherever a video or image URL is."""

    asset_id: str
    content_type: str
    size_bytes: int
    expires_at: datetime


class Accepted(_Model):
    """The ``202`` envelope of a submit; ``id`` is the job's id."""

    id: str
    status: str
    service: str
    location: str | None = None
    idempotency_key: str | None = None


class Usage(_Model):
    unit: str
    billed_seconds: float
    unit_price_usd: float
    amount_usd: float


class ResultData(_Model):
    url: str | None
    key: str
    folder_id: str
    content_type: str
    duration_seconds: float
    expires_at: datetime | None
    expired: bool
    usage: Usage
    output_format: str = "mp4"
    quality: str | None = None  # the matte quality that ran (fast / best)

    @property
    def extension(self) -> str:
        """The result's file extension (``.mp4``, ``.webm``, ``.mov``), from its key."""
        name = self.key.rsplit("/", 1)[-1]
        return name[name.rfind(".") :] if "." in name else ".mp4"


class JobError(_Model):
    code: str
    message: str
    field: str | None = None


class Webhook(_Model):
    url: str
    state: str
    attempts: int
    last_status: int | None = None


class Job(_Model):
    """A job as ``GET /v2/jobs/{id}`` returns it."""

    id: str
    service: str
    status: JobStatus
    progress: float
    created_at: datetime
    updated_at: datetime
    attempts: int
    request: dict[str, Any]
    result_data: ResultData | None = None
    error: JobError | None = None
    webhook: Webhook | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def raise_for_status(self) -> None:
        """Raise the job's error as its project class (``JobCancelled`` when cancelled); else nothing."""
        if self.status == "failed":
            err = self.error
            raise from_code(
                err.code if err else "internal",
                err.message if err else "the job failed",
                field=err.field if err else None,
            )
        if self.status == "cancelled":
            raise from_code("cancelled", f"job {self.id} was cancelled")


class JobPage(_Model):
    jobs: list[Job]
    next_cursor: str | None


JobProgress = Callable[[Job], None]
BytesProgress = Callable[[int, int], None]  # (bytes done, bytes total; 0 when unknown)
RetryHook = Callable[[int, float, str], None]  # (attempt number, seconds to wait, why)


class Client:
    """A client for one service at ``base_url`` and one API key.

    ``max_retries`` bounds the retries of one call (not counting the first attempt); ``backoff`` is the
    first wait for a 5xx or a connection error, doubled each time up to ``max_backoff``; a 429 waits its
    ``Retry-After`` (at most ``max_retry_after`` seconds, else the ``RateLimited`` error is raised at once).
    ``on_retry`` is told about every wait. ``transport`` is passed to httpx (tests, proxies).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 120.0,
        on_retry: RetryHook | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.api_key = api_key
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.on_retry = on_retry
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "bgservice-client"},
        )

    # -- context manager ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the API -----------------------------------------------------------------------------------

    def upload(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        *,
        filename: str | None = None,
        content_type: str = "application/octet-stream",
        progress: BytesProgress | None = None,
    ) -> Asset:
        """Upload a local file (a path or a binary file object) as an asset; streamed, never read whole."""
        own = isinstance(file, (str, os.PathLike))
        fh: IO[bytes] = open(file, "rb") if isinstance(file, (str, os.PathLike)) else file  # noqa: SIM115
        try:
            name = filename or Path(getattr(fh, "name", "upload") or "upload").name
            reader = _CountingReader(fh, progress)
            resp = self._request(
                "POST", ASSETS_PATH, files={"file": (name, reader, content_type)}, rewind=reader.restart
            )
        finally:
            if own:
                fh.close()
        return Asset.model_validate(resp.json())

    def submit(
        self,
        video: str,
        *,
        background: str | None = None,
        image: str | None = None,
        start: float | str | None = None,
        end: float | str | None = None,
        callback_url: str | None = None,
        output_format: str | None = None,
        background_blur: int | None = None,
        background_video: str | None = None,
        fit: str | None = None,
        quality: str | None = None,
        extra: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Submit a job. ``video`` and ``image`` are URLs or asset ids; ``background`` a hex colour.

        Neither ``background`` nor ``image``: the subject over white. ``output_format`` mp4 | webm | mov |
        matte (``outputFormat``), ``background_blur`` 1..100, ``background_video`` a URL or asset id
        (``backgroundVideoUrl``), ``fit`` stretch | cover | contain, ``quality`` fast | best: see the
        README's HTTP API section. ``extra`` adds other body fields as given. One ``Idempotency-Key``
        (``idempotency_key`` or a fresh UUID) goes with every attempt, so retries never make a second job.
        """
        body: dict[str, Any] = {"videoUrl": video}
        if background is not None:
            body["back_ground"] = background
        if image is not None:
            body["imageUrl"] = image
        if start is not None:
            body["start"] = start
        if end is not None:
            body["end"] = end
        if callback_url is not None:
            body["callbackUrl"] = callback_url
        for name, value in (
            ("outputFormat", output_format),
            ("backgroundBlur", background_blur),
            ("backgroundVideoUrl", background_video),
            ("fit", fit),
            ("quality", quality),
        ):
            if value is not None:
                body[name] = value
        if extra:
            body.update(extra)
        key = idempotency_key or str(uuid.uuid4())
        resp = self._request("POST", SUBMIT_PATH, json=body, headers={"Idempotency-Key": key})
        data = resp.json()
        job = data.get("job", data)  # the 202 envelope; a 200 (Prefer: wait) is the job itself
        return Accepted(
            id=job["id"],
            status=job["status"],
            service=job.get("service", "studio-background"),
            location=resp.headers.get("Location"),
            idempotency_key=key,
        )

    def get(self, job_id: str) -> Job:
        return Job.model_validate(self._request("GET", f"{JOBS_PATH}/{job_id}").json())

    def list(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> JobPage:
        """One page of the key's jobs, newest first; pass ``next_cursor`` back as ``cursor`` for the next."""
        params: dict[str, str | int] = {}
        if status is not None:
            params["status"] = status
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        return JobPage.model_validate(self._request("GET", JOBS_PATH, params=params).json())

    def iter_jobs(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Every job of the key, newest first, following the cursor."""
        cursor: str | None = None
        while True:
            page = self.list(status=status, limit=page_size, cursor=cursor)
            yield from page.jobs
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (``JobNotCancellable`` once it has completed or failed)."""
        return Job.model_validate(self._request("DELETE", f"{JOBS_PATH}/{job_id}").json())

    def delete_result(self, job_id: str) -> None:
        self._request("DELETE", f"{JOBS_PATH}/{job_id}/result")

    def delete_asset(self, asset_id: str) -> None:
        self._request("DELETE", f"{ASSETS_PATH}/{asset_id}")

    def wait(
        self,
        job_id: str,
        *,
        progress: JobProgress | None = None,
        timeout: float | None = None,
        poll_interval: float = 0.5,
        max_poll_interval: float = 5.0,
        raise_on_failure: bool = True,
    ) -> Job:
        """Poll until the job ends; ``progress`` gets every job seen (status and ``progress`` 0..1).

        The interval grows from ``poll_interval`` to ``max_poll_interval`` while nothing changes and
        falls back when the job moves. With ``raise_on_failure`` (the default) a failed job raises its
        error's project class and a cancelled one ``JobCancelled``; else the ended job is returned.
        ``timeout`` (seconds) raises ``TimeoutError``; the job keeps running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval
        last: tuple[str, float] | None = None
        while True:
            job = self.get(job_id)
            if progress is not None:
                progress(job)
            if job.done:
                if raise_on_failure:
                    job.raise_for_status()
                return job
            now = (job.status, job.progress)
            interval = poll_interval if now != last else min(interval * 1.5, max_poll_interval)
            last = now
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
                interval = min(interval, left)
            time.sleep(interval)

    def download(
        self, job: Job | str, dest: str | os.PathLike[str], *, progress: BytesProgress | None = None
    ) -> Path:
        """Save a completed job's result to ``dest`` (written to a temporary name, then renamed).

        The job is fetched afresh so the signed URL is valid; an interrupted transfer resumes with a
        Range request.
        """
        job_id = job if isinstance(job, str) else job.id
        fresh = self.get(job_id)
        fresh.raise_for_status()
        if fresh.status != "completed" or fresh.result_data is None:
            raise from_code("invalid_request", f"job {job_id} is {fresh.status}, it has no result yet")
        if fresh.result_data.url is None:
            raise from_code("not_found", f"the result of job {job_id} has expired")
        url = urljoin(self.base_url, fresh.result_data.url)
        out = Path(dest)
        part = out.with_name(out.name + ".part")
        try:
            self._fetch_to(url, part, progress)
            part.replace(out)
        finally:
            part.unlink(missing_ok=True)
        return out

    # -- plumbing ----------------------------------------------------------------------------------

    def _fetch_to(self, url: str, part: Path, progress: BytesProgress | None) -> None:
        done = 0
        total = 0
        attempt = 0
        with open(part, "wb") as fh:
            while True:
                headers = {"Range": f"bytes={done}-"} if done else {}
                try:
                    with self._http.stream("GET", url, headers=headers) as resp:
                        if resp.status_code >= 400:
                            resp.read()
                            err = self._error(resp)
                            if not self._retryable(resp) or attempt >= self.max_retries:
                                raise err
                            attempt += 1
                            self._sleep(attempt, self._wait_for(resp, attempt), f"HTTP {resp.status_code}")
                            continue
                        if done and resp.status_code != 206:  # the server ignored the Range: start over
                            fh.seek(0)
                            fh.truncate()
                            done = 0
                        if not total:
                            length = resp.headers.get("Content-Length")
                            total = done + int(length) if length and length.isdigit() else 0
                        for chunk in resp.iter_bytes(1 << 20):
                            fh.write(chunk)
                            done += len(chunk)
                            if progress is not None:
                                progress(done, total)
                    if total and done < total:
                        raise httpx.RemoteProtocolError("the result ended early")
                    return
                except _RETRYABLE_EXC as exc:
                    if attempt >= self.max_retries:
                        raise from_code(
                            "service_unavailable", f"downloading the result failed: {exc}"
                        ) from exc
                    attempt += 1
                    self._sleep(attempt, self._backoff(attempt), type(exc).__name__)

    def _request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        rewind: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        url = urljoin(self.base_url, path.lstrip("/"))
        all_headers = dict(headers or {})
        if self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        attempt = 0
        while True:
            if rewind is not None:
                rewind()
            try:
                resp = self._http.request(method, url, headers=all_headers, **kwargs)
            except _RETRYABLE_EXC as exc:
                if attempt >= self.max_retries:
                    raise from_code(
                        "service_unavailable", f"{method} {path}: {type(exc).__name__}: {exc}"
                    ) from exc
                attempt += 1
                self._sleep(attempt, self._backoff(attempt), type(exc).__name__)
                continue
            if resp.status_code < 400:
                return resp
            err = self._error(resp)
            if not self._retryable(resp, err) or attempt >= self.max_retries:
                raise err
            wait = self._wait_for(resp, attempt + 1)
            if isinstance(err, RateLimited) and wait > self.max_retry_after:
                raise err
            attempt += 1
            self._sleep(attempt, wait, f"HTTP {resp.status_code} {err.code}")

    @staticmethod
    def _retryable(resp: httpx.Response, err: BgServiceError | None = None) -> bool:
        if resp.status_code in (429, 408) or resp.status_code >= 500:
            return True
        return err is not None and err.code == "idempotency_key_in_use"

    def _wait_for(self, resp: httpx.Response, attempt: int) -> float:
        if resp.status_code in (429, 503):
            after = _retry_after(resp.headers.get("Retry-After"))
            if after is not None:
                return after
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        base: float = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)  # "equal jitter": never less than half the step

    def _sleep(self, attempt: int, seconds: float, why: str) -> None:
        if self.on_retry is not None:
            self.on_retry(attempt, seconds, why)
        time.sleep(seconds)

    @staticmethod
    def _error(resp: httpx.Response) -> BgServiceError:
        code = _STATUS_CODES.get(resp.status_code, "internal")
        message = f"HTTP {resp.status_code}"
        field: str | None = None
        try:
            body = resp.json()
        except ValueError:
            text = resp.text.strip()
            if text:
                message = f"HTTP {resp.status_code}: {text[:300]}"
        else:
            info = body.get("error") if isinstance(body, dict) else None
            if isinstance(info, dict) and isinstance(info.get("code"), str):
                code = info["code"]
                message = str(info.get("message") or message)
                field = info.get("field") if isinstance(info.get("field"), str) else None
        err = from_code(code, message, field=field)
        if isinstance(err, RateLimited):
            after = _retry_after(resp.headers.get("Retry-After"))
            err.retry_after = max(1, round(after)) if after is not None else 1
        return err


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _CountingReader:
    """A file wrapper that reports bytes read (httpx reads multipart files in 64 KiB chunks)."""

    def __init__(self, fh: IO[bytes], progress: BytesProgress | None) -> None:
        self._fh = fh
        self._progress = progress
        self._start = fh.tell() if fh.seekable() else 0
        try:
            self._total = os.fstat(fh.fileno()).st_size - self._start
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            self._total = 0
        self._done = 0
        self.name = getattr(fh, "name", "upload")

    def restart(self) -> None:
        if self._fh.seekable():
            self._fh.seek(self._start)
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        self._done += len(chunk)
        if self._progress is not None and chunk:
            self._progress(self._done, self._total)
        return chunk

    def tell(self) -> int:
        return self._fh.tell() - self._start

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            if offset == 0:
                self._done = 0
            return self._fh.seek(self._start + offset) - self._start
        return self._fh.seek(offset, whence) - self._start
