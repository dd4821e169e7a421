"""``POST /v1/proxy/studio-background``: from a JSON body to a queued job.

Decided here, before anything is queued (each a 4xx naming the field): the body's size (64 KiB -> 413)
and shape (unknown fields, wrong types, an alias with its new name -> 422 ``invalid_request``), the
colour, the choice of at most one background (colour, image, video or blur), ``fit`` without an image or
a video and ``matte`` with a background (``invalid_background``); the output format and the quality are
enums (``invalid_request``), the times (``invalid_trim``), every URL
(``url_not_allowed``, by the safe fetcher's submit-time rules) and every asset id (``invalid_asset``).
What needs the video itself (``start`` past its end, a body that is not a video) fails the job later.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from bgservice.api import assets, files
from bgservice.api.auth import Caller
from bgservice.api.errors import validation_message
from bgservice.api.models import NormalisedRequest, SubmitRequest
from bgservice.api.service import MAX_JSON_BYTES, Service
from bgservice.errors import BgServiceError, InputTooLarge, InvalidBackground, InvalidRequest, InvalidTrim
from bgservice.spec import DEFAULT_FORMAT, JobSpec, parse_blur, parse_hex_colour
from bgservice.timecode import parse_time

# RFC 9745 Deprecation: the moment input_url / background were renamed (2026-04-29T00:00:00Z).
DEPRECATION = "@1777420800"
ALIASES = {"input_url": "videoUrl", "background": "back_ground"}


@dataclass
class Submission:
    job_id: str
    spec: JobSpec
    request: NormalisedRequest
    assets: dict[str, str] = field(default_factory=dict)  # asset id -> the service's storage URL
    deprecated: bool = False


def parse_body(raw: bytes) -> tuple[SubmitRequest, bool]:
    """The validated body and whether a deprecated alias was used."""
    if len(raw) > MAX_JSON_BYTES:
        raise InputTooLarge(f"the JSON body is {len(raw)} bytes, the limit is {MAX_JSON_BYTES}")
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    for alias, name in ALIASES.items():
        if alias in data and name in data:
            raise InvalidRequest(f"give {name} or its deprecated alias {alias}, not both", field=alias)
    try:
        body = SubmitRequest.model_validate(data)
    except ValidationError as exc:
        message, fld = validation_message(list(exc.errors()))
        raise InvalidRequest(message, field=fld) from None
    deprecated = any(alias in data for alias in ALIASES)
    return body, deprecated


def uses_alias(raw: bytes) -> bool:
    """Whether the body names a deprecated alias (the answer then carries ``Deprecation``, errors too)."""
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and any(alias in data for alias in ALIASES)


def check_url(url: str, service: Service, *, field: str) -> None:
    """The safe fetcher's submit-time rules (scheme, literal addresses, allowed prefixes)."""
    from bgservice.io.fetch import check_source_url

    check_source_url(url, service.settings, field=field)


def _source(text: str | None, name: str, service: Service, caller: Caller, kind: str, sub: Submission) -> str:
    """Check one source at submit; an asset id is resolved to its storage URL (kept in the spec's
    ``assets`` for the decoder stage), anything else must pass the safe fetcher's submit-time rules."""
    url = (text or "").strip()
    if not url:
        raise InvalidRequest(f"{name} must not be empty", field=name)
    if assets.is_asset_id(url):
        sub.assets[url] = assets.resolve(
            service.engine, service.settings, url, caller.key_id, field=name, kind=kind
        )
        return url
    check_url(url, service, field=name)
    return url


def build(raw: bytes, service: Service, caller: Caller) -> Submission:
    body, deprecated = parse_body(raw)
    video = body.videoUrl if body.videoUrl is not None else body.input_url
    colour_text = body.back_ground if body.back_ground is not None else body.background
    colour_field = "back_ground" if body.back_ground is not None else "background"
    video_field = "videoUrl" if body.videoUrl is not None else "input_url"
    if video is None:
        raise InvalidRequest("videoUrl is required", field="videoUrl")
    job_id = str(uuid.uuid4())
    spec_holder = Submission(
        job_id, JobSpec("", ""), NormalisedRequest(videoUrl=video), deprecated=deprecated
    )

    colour = colour_text.strip() if colour_text else None
    image = body.imageUrl.strip() if body.imageUrl else None
    video_bg = body.backgroundVideoUrl.strip() if body.backgroundVideoUrl else None
    given = [
        name
        for name, value in (
            (colour_field, colour),
            ("imageUrl", image),
            ("backgroundVideoUrl", video_bg),
            ("backgroundBlur", body.backgroundBlur),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise InvalidBackground(f"give at most one background, not {' and '.join(given)}", field=given[0])
    if body.fit is not None and not (image or video_bg):
        raise InvalidBackground("fit applies to a background image or video only", field="fit")
    try:
        parse_blur(body.backgroundBlur)
    except InvalidBackground as exc:
        raise InvalidBackground(exc.message, field="backgroundBlur") from None
    fmt = body.outputFormat or DEFAULT_FORMAT
    if fmt == "matte" and given:
        raise InvalidBackground(
            "the matte output has no background: leave the background out", field="outputFormat"
        )
    try:
        rgb = parse_hex_colour(colour) if colour else None
    except InvalidBackground as exc:
        raise InvalidBackground(exc.message, field=colour_field) from None
    start = _time(body.start, "start")
    end = _time(body.end, "end")
    if start is not None and end is not None and end <= start:
        raise InvalidTrim(f"end {end:g} s is not after start {start:g} s", field="end")

    callback = _callback(body.callbackUrl, service)
    input_url = _source(video, video_field, service, caller, "video", spec_holder)
    image_url = _source(image, "imageUrl", service, caller, "image", spec_holder) if image else None
    video_bg_url = (
        _source(video_bg, "backgroundVideoUrl", service, caller, "video", spec_holder) if video_bg else None
    )
    output = files.url_of(service.settings, files.result_key(caller.folder_id, job_id, fmt))
    try:
        spec = JobSpec.build(
            input_url,
            output,
            colour=colour,
            image_url=image_url,
            background_video_url=video_bg_url,
            background_blur=body.backgroundBlur,
            fit=body.fit,
            output_format=fmt,
            start=start,
            end=end,
            quality=body.quality,
        )
    except BgServiceError as exc:  # checked above field by field; kept as a guard naming a field
        if exc.field is None:
            exc.field = given[0] if isinstance(exc, InvalidBackground) and given else "outputFormat"
        raise
    spec_holder.spec = replace(spec, untrusted=True, assets=dict(spec_holder.assets))
    spec_holder.request = NormalisedRequest(
        videoUrl=video.strip(),
        back_ground="#{:02X}{:02X}{:02X}".format(*rgb) if rgb is not None else None,
        imageUrl=image,
        backgroundVideoUrl=video_bg,
        backgroundBlur=body.backgroundBlur,
        fit=body.fit,
        outputFormat=body.outputFormat,
        quality=body.quality,
        start=start,
        end=end,
        callbackUrl=callback,
    )
    return spec_holder


def _callback(url: str | None, service: Service) -> str | None:
    """The webhook URL under the safe fetcher's rules (checked again at every delivery)."""
    if url is None:
        return None
    from bgservice.api.webhooks import check_callback_url

    return check_callback_url(url, service.settings)


def _time(value: Any, name: str) -> float | None:
    try:
        return parse_time(value, name=name)
    except InvalidTrim as exc:
        raise InvalidTrim(exc.message, field=name) from None


def enqueue(sub: Submission, service: Service, caller: Caller) -> None:
    """Record the assets' use first (so the sweeper keeps them), then the queued job."""
    for asset_id in sub.assets:
        assets.record_use(service.writer, asset_id, sub.job_id)
    service.store.create(
        sub.spec.to_dict(),
        owner=caller.key_id,
        request=sub.request.model_dump(),
        job_id=sub.job_id,
    )
