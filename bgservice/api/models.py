"""Pydantic models at the HTTP edge: what a request may carry and what every answer looks like.

These models *are* the OpenAPI document's schemas: every route declares one for every status it returns.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SERVICE = "studio-background"
UNIT_PRICE_USD = 0.06

TimeValue = float | str


class SubmitRequest(BaseModel):
    """``POST /v1/proxy/studio-background``. Unknown fields are refused (422 ``invalid_request``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"videoUrl": "asset_0123456789abcdef", "back_ground": "#1E90FF", "start": 0, "end": 4}
            ]
        },
    )

    videoUrl: str | None = Field(
        None, description="the video: an http(s) URL, an asset id (asset_…) or an allowed object-store URL"
    )
    back_ground: str | None = Field(None, description="background colour, #RGB or #RRGGBB")
    imageUrl: str | None = Field(
        None, description="background image (JPEG/PNG/WebP): an http(s) URL or an asset id"
    )
    backgroundVideoUrl: str | None = Field(
        None,
        description="background video (looped when shorter, cut when longer, its audio ignored): an http(s)"
        " URL or an asset id",
    )
    backgroundBlur: int | None = Field(
        None,
        strict=True,
        description="blur the original background: strength 1..100 (outside: invalid_background)",
        json_schema_extra={"minimum": 1, "maximum": 100},
    )
    fit: Literal["stretch", "cover", "contain"] | None = Field(
        None, description="how an image or video background meets the frame (default stretch)"
    )
    outputFormat: Literal["mp4", "webm", "mov", "matte"] | None = Field(
        None,
        description="mp4 (default), webm (transparent VP9), mov (transparent ProRes 4444) or matte (the"
        " alpha as greyscale MP4)",
    )
    quality: Literal["fast", "best"] | None = Field(
        None, description="matte quality: fast (Selfie) or best (MODNet); default: the service's setting"
    )
    start: TimeValue | None = Field(None, description="trim start: seconds, or hh:mm:ss(.fff) / mm:ss")
    end: TimeValue | None = Field(None, description="trim end (clamped to the video's end)")
    callbackUrl: str | None = Field(
        None, description="https URL that gets one signed POST (Standard Webhooks) when the job ends"
    )
    input_url: str | None = Field(None, deprecated=True, description="deprecated alias of videoUrl")
    background: str | None = Field(None, deprecated=True, description="deprecated alias of back_ground")


class JobRef(BaseModel):
    id: str
    status: Literal["queued"]
    service: Literal["studio-background"] = "studio-background"


class Accepted(BaseModel):
    """The ``202`` answer to a submit (``Location: /v2/jobs/<id>``)."""

    status: Literal["accepted"] = "accepted"
    message: Literal["Job queued for processing"] = "Job queued for processing"
    job: JobRef


class NormalisedRequest(BaseModel):
    """The request as the service understood it: new field names, times in seconds, colour as #RRGGBB."""

    videoUrl: str
    back_ground: str | None = None
    imageUrl: str | None = None
    backgroundVideoUrl: str | None = Field(None, exclude_if=lambda v: v is None)
    backgroundBlur: int | None = Field(None, exclude_if=lambda v: v is None)
    fit: str | None = Field(None, exclude_if=lambda v: v is None)
    outputFormat: str | None = Field(None, exclude_if=lambda v: v is None)
    quality: str | None = Field(None, exclude_if=lambda v: v is None)
    start: float | None = None
    end: float | None = None
    callbackUrl: str | None = Field(None, exclude_if=lambda v: v is None)  # shown only when given


class Usage(BaseModel):
    unit: Literal["second"] = "second"
    billed_seconds: float
    unit_price_usd: float = UNIT_PRICE_USD
    amount_usd: float


class ResultData(BaseModel):
    url: str | None = Field(description="signed download URL; null once the result expired or was deleted")
    key: str = Field(description="{folder_id}/{job_id}.{ext}: .mp4 (mp4, matte), .webm or .mov")
    folder_id: str
    content_type: str = Field(
        "video/mp4", description="video/mp4 (mp4, matte), video/webm (webm) or video/quicktime (mov)"
    )
    output_format: str = Field("mp4", description="the format written: mp4, webm, mov or matte")
    quality: str | None = Field(
        None, description="the matte quality that ran (fast or best); null for jobs that did not record it"
    )
    duration_seconds: float
    expires_at: str = Field(description="RFC 3339 UTC: the earlier of the URL's end and the retention's")
    expired: bool
    usage: Usage


class JobError(BaseModel):
    code: str
    message: str


class WebhookState(BaseModel):
    url: str
    state: Literal["pending", "delivered", "failed", "disabled"]
    attempts: int
    last_status: int | None


class Job(BaseModel):
    id: str
    service: Literal["studio-background"] = "studio-background"
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    progress: float = Field(ge=0, le=1)
    created_at: str
    updated_at: str
    attempts: int
    request: NormalisedRequest | dict[str, Any]
    result_data: ResultData | None
    error: JobError | None
    webhook: WebhookState | None = Field(
        None, exclude_if=lambda v: v is None, description="present when the submit gave a callbackUrl"
    )


class WebhookSecret(BaseModel):
    """``GET /v1/webhooks/secret``: the key's webhook signing secret (Standard Webhooks, ``whsec_…``)."""

    secret: str


class JobList(BaseModel):
    jobs: list[Job]
    next_cursor: str | None


class Asset(BaseModel):
    asset_id: str
    content_type: str
    size_bytes: int
    expires_at: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok"] = "ok"
    database: bool
    ray: bool
    runner: bool
