"""What a job asks for: the one description shared by the CLI, the batch runner, the DAG and the service."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bgservice.errors import InvalidBackground, InvalidRequest
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


@dataclass(frozen=True)
class Background:
    """White (nothing given), a solid colour, or an image stretched to the frame."""

    kind: Literal["white", "colour", "image"] = "white"
    colour: tuple[int, int, int] = WHITE
    image_url: str | None = None

    @classmethod
    def parse(cls, colour: str | None = None, image_url: str | None = None) -> Background:
        colour = colour.strip() if colour else None
        image_url = image_url.strip() if image_url else None
        if colour and image_url:
            raise InvalidBackground("give a background colour or a background image, not both")
        if colour:
            return cls(kind="colour", colour=parse_hex_colour(colour))
        if image_url:
            return cls(kind="image", image_url=image_url)
        return cls()


@dataclass(frozen=True)
class JobSpec:
    """One job: input, output, background, trim window (seconds, ``None`` = from start / to end), matte
    quality (``None`` = the operator's default, ``BGSERVICE_QUALITY``)."""

    input_url: str
    output_url: str
    background: Background = field(default_factory=Background)
    start: float | None = None
    end: float | None = None
    quality: str | None = None

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
        quality: str | None = None,
    ) -> JobSpec:
        """Validate the user-facing strings; raises the matching :mod:`bgservice.errors` class."""
        return cls(
            input_url=input_url,
            output_url=output_url,
            background=Background.parse(colour, image_url),
            start=parse_time(start, name="start"),
            end=parse_time(end, name="end"),
            quality=parse_quality(quality),
        )

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
