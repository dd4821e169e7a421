"""What a job asks for: the one description shared by the CLI, the batch runner, the DAG and the service.

Every entry point builds a :class:`JobSpec` through :meth:`JobSpec.build`, which validates the user's
values and raises the matching :mod:`bgservice.errors` class. The output formats and what a result is
served as live in :data:`OUTPUT_FORMATS` (the API takes its result key's extension and ``content_type``
from there).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

from bgservice.errors import InvalidBackground, InvalidOutput, InvalidRequest
from bgservice.timecode import parse_time

_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
WHITE: tuple[int, int, int] = (255, 255, 255)
# Matte quality a job may ask for: "fast" (MediaPipe Selfie + refinement), "best" (MODNet). None: the
# operator's BGSERVICE_QUALITY (auto | fast | best), resolved by the Segmenters that run the job.
QUALITIES = ("fast", "best")


def parse_quality(value: object) -> str | None:
    """``None`` or one of :data:`QUALITIES`; anything else is ``invalid_request``."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in QUALITIES:
        raise InvalidRequest(f"quality must be one of {', '.join(QUALITIES)}, got {value!r}")
    return value.strip().lower()

OutputFormat = Literal["mp4", "webm", "mov", "matte"]
Fit = Literal["stretch", "cover", "contain"]
Render = Literal["composite", "transparent", "matte"]


@dataclass(frozen=True)
class FormatInfo:
    """How one output format is written and served."""

    extension: str  # the result's file extension (".mp4"); the API's result key ends with it
    content_type: str  # what the result is served as
    container: str  # the container ffmpeg writes ("mp4", "webm", "mov")
    transparent: bool  # keeps the alpha channel when no background is given
    description: str


OUTPUT_FORMATS: dict[str, FormatInfo] = {
    "mp4": FormatInfo(".mp4", "video/mp4", "mp4", False, "H.264 + AAC, composited over the background"),
    "webm": FormatInfo(
        ".webm",
        "video/webm",
        "webm",
        True,
        "VP9 with alpha (yuva420p) + Opus; transparent unless a background is given",
    ),
    "mov": FormatInfo(
        ".mov",
        "video/quicktime",
        "mov",
        True,
        "ProRes 4444 with alpha + the audio (AAC copied or PCM); transparent without a background",
    ),
    "matte": FormatInfo(
        ".mp4", "video/mp4", "mp4", False, "the alpha matte as full-range greyscale H.264 (255 = subject)"
        " + AAC",
    ),
}
DEFAULT_FORMAT: OutputFormat = "mp4"
# the extension an output path/URL may end with -> the format it implies ("matte" is an .mp4 too)
EXTENSION_FORMATS: dict[str, OutputFormat] = {".mp4": "mp4", ".webm": "webm", ".mov": "mov"}
FITS: tuple[Fit, ...] = ("stretch", "cover", "contain")
BLUR_MIN, BLUR_MAX = 1, 100
# backgroundBlur N -> Gaussian standard deviation = N * BLUR_SIGMA_PER_STEP * frame height
BLUR_SIGMA_PER_STEP = 0.001


def blur_sigma(strength: int, frame_height: int) -> float:
    """The background blur's Gaussian sigma in pixels: ``strength / 1000 x frame height``.

    1080p: strength 10 -> sigma 10.8 px, 50 -> 54 px, 100 -> 108 px."""
    return float(strength) * BLUR_SIGMA_PER_STEP * float(frame_height)


def parse_hex_colour(text: str) -> tuple[int, int, int]:
    """``#RGB`` or ``#RRGGBB`` (case-insensitive, ``#`` optional) as an RGB triple."""
    m = _HEX.match(text.strip())
    if not m:
        raise InvalidBackground(f"background colour must be #RGB or #RRGGBB, got {text!r}")
    digits = m.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    r, g, b = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
    return (r, g, b)


def parse_blur(value: int | str | None) -> int | None:
    """``backgroundBlur``: an integer 1..100 (a digit string from the CLI); else InvalidBackground."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidBackground(f"background blur must be an integer {BLUR_MIN}..{BLUR_MAX}, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d+", text):
            raise InvalidBackground(
                f"background blur must be an integer {BLUR_MIN}..{BLUR_MAX}, got {value!r}"
            )
        number = int(text)
    elif isinstance(value, int):
        number = value
    else:
        raise InvalidBackground(f"background blur must be an integer {BLUR_MIN}..{BLUR_MAX}, got {value!r}")
    if not BLUR_MIN <= number <= BLUR_MAX:
        raise InvalidBackground(f"background blur must be {BLUR_MIN}..{BLUR_MAX}, got {number}")
    return number


def parse_fit(value: str | None) -> Fit | None:
    if value is None:
        return None
    text = value.strip().lower() if isinstance(value, str) else value
    for fit in FITS:
        if text == fit:
            return fit
    raise InvalidBackground(f"fit must be one of {', '.join(FITS)}, got {value!r}")


def parse_output_format(value: str | None) -> OutputFormat | None:
    """``--format`` / ``outputFormat``: mp4, webm, mov or matte (case-insensitive); else InvalidOutput."""
    if value is None:
        return None
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in OUTPUT_FORMATS:
        raise InvalidOutput(f"output format must be one of {', '.join(OUTPUT_FORMATS)}, got {value!r}")
    return cast(OutputFormat, text)


def format_from_extension(output_url: str) -> OutputFormat | None:
    """The format an output path's extension implies (``.mp4``, ``.webm``, ``.mov``); None for others."""
    name = output_url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    dot = name.rfind(".")
    if dot <= 0:
        return None
    return EXTENSION_FORMATS.get(name[dot:].lower())


def resolve_output_format(output_url: str, requested: str | None) -> OutputFormat:
    """The job's format: ``requested`` if given, else what the extension implies, else mp4.

    A requested format the extension contradicts (``out.mp4`` with ``webm``) is InvalidOutput; ``matte``
    goes with ``.mp4``. An extension outside :data:`EXTENSION_FORMATS` implies nothing."""
    wanted = parse_output_format(requested)
    implied = format_from_extension(output_url)
    if wanted is None:
        return implied or DEFAULT_FORMAT
    if implied is None or OUTPUT_FORMATS[wanted].extension == OUTPUT_FORMATS[implied].extension:
        return wanted
    raise InvalidOutput(
        f"the output format {wanted} is written as {OUTPUT_FORMATS[wanted].extension}, but the output "
        f"ends with {output_url[output_url.rfind('.'):]!r}"
    )


@dataclass(frozen=True)
class Background:
    """What goes behind the subject: white (nothing given), a colour, an image, a video, or the blurred
    original. ``fit`` says how an image or a video meets the frame (stretch / cover / contain)."""

    kind: Literal["white", "colour", "image", "video", "blur"] = "white"
    colour: tuple[int, int, int] = WHITE
    image_url: str | None = None
    video_url: str | None = None
    blur: int | None = None  # 1..100, see blur_sigma
    fit: Fit = "stretch"

    @property
    def given(self) -> bool:
        """False for the default (nothing asked for): transparent formats then keep their alpha."""
        return self.kind != "white"

    @classmethod
    def parse(
        cls,
        colour: str | None = None,
        image_url: str | None = None,
        video_url: str | None = None,
        blur: int | str | None = None,
        fit: str | None = None,
    ) -> Background:
        colour = colour.strip() if colour else None
        image_url = image_url.strip() if image_url else None
        video_url = video_url.strip() if video_url else None
        strength = parse_blur(blur)
        fit_value = parse_fit(fit)
        given = [
            name
            for name, value in (
                ("a colour", colour),
                ("an image", image_url),
                ("a video", video_url),
                ("a blur", strength),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise InvalidBackground(f"give at most one background, not both {' and '.join(given)}")
        if fit_value is not None and not (image_url or video_url):
            raise InvalidBackground("fit applies to a background image or video only")
        fit_value = fit_value or "stretch"
        if colour:
            return cls(kind="colour", colour=parse_hex_colour(colour))
        if image_url:
            return cls(kind="image", image_url=image_url, fit=fit_value)
        if video_url:
            return cls(kind="video", video_url=video_url, fit=fit_value)
        if strength is not None:
            return cls(kind="blur", blur=strength)
        return cls()


@dataclass(frozen=True)
class JobSpec:
    """One job: input, output, background, trim window (seconds, ``None`` = from start / to end), format,
    matte quality (``None`` = the operator's default, ``BGSERVICE_QUALITY``)."""

    input_url: str
    output_url: str
    background: Background = field(default_factory=Background)
    start: float | None = None
    end: float | None = None
    # A stranger's job (the HTTP API): every source goes through the safe fetcher's rules
    # (bgservice.io.fetch.fetch_to_local). ``assets`` maps the asset ids the job uses to the service's own
    # storage URLs (resolved at submit), so the decoder stage needs no database.
    untrusted: bool = False
    assets: dict[str, str] = field(default_factory=dict)
    output_format: OutputFormat = DEFAULT_FORMAT
    quality: str | None = None

    def resolve_asset(self, asset_id: str) -> str:
        """The storage URL of an asset this job was submitted with (``invalid_asset`` otherwise)."""
        from bgservice.errors import InvalidAsset

        try:
            return self.assets[asset_id]
        except KeyError:
            raise InvalidAsset(f"unknown asset {asset_id!r}") from None

    @classmethod
    def build(
        cls,
        input_url: str,
        output_url: str,
        *,
        colour: str | None = None,
        image_url: str | None = None,
        start: str | float | None = None,
        end: str | float | None = None,
        output_format: str | None = None,
        background_blur: int | str | None = None,
        background_video_url: str | None = None,
        fit: str | None = None,
        quality: str | None = None,
    ) -> JobSpec:
        """Validate the user-facing values; raises the matching :mod:`bgservice.errors` class.

        ``output_format``: mp4 | webm | mov | matte, or None for what ``output_url``'s extension implies
        (else mp4); one the extension contradicts is InvalidOutput. ``background_blur`` 1..100,
        ``background_video_url``, ``fit`` (stretch | cover | contain, with an image or a video only): see
        :class:`Background`; at most one background; ``matte`` takes none (InvalidBackground).
        """
        fmt = resolve_output_format(output_url, output_format)
        background = Background.parse(colour, image_url, background_video_url, background_blur, fit)
        if fmt == "matte" and background.given:
            raise InvalidBackground("the matte output has no background: leave the background out")
        return cls(
            input_url=input_url,
            output_url=output_url,
            background=background,
            start=parse_time(start, name="start"),
            end=parse_time(end, name="end"),
            output_format=fmt,
            quality=parse_quality(quality),
        )

    @property
    def format_info(self) -> FormatInfo:
        return OUTPUT_FORMATS[self.output_format]

    @property
    def render(self) -> Render:
        """What the frames become: ``matte`` (alpha only), ``transparent`` (RGBA: webm/mov without a
        background) or ``composite`` (the subject over the background)."""
        if self.output_format == "matte":
            return "matte"
        if self.format_info.transparent and not self.background.given:
            return "transparent"
        return "composite"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the job store keeps a job's spec in this form)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        bg = dict(data.get("background") or {})
        if "colour" in bg:
            bg["colour"] = tuple(bg["colour"])
        fields = {k: v for k, v in data.items() if k != "background"}
        return cls(background=Background(**bg), **fields)
