"""User-facing values: times, colours, the error tree's contract."""

from __future__ import annotations

import pickle

import pytest

from bgservice import errors
from bgservice.errors import InvalidBackground, InvalidOutput, InvalidTrim
from bgservice.spec import OUTPUT_FORMATS, Background, JobSpec, blur_sigma, parse_hex_colour
from bgservice.timecode import parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12", 12.0),
        ("12.5", 12.5),
        (".5", 0.5),
        ("01:02", 62.0),
        ("1:02:03.250", 3723.25),
        ("00:00:07", 7.0),
        (3, 3.0),
        (2.5, 2.5),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text: str | float | None, seconds: float | None) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["-1", "abc", "1:2:3:4", "00:61", "1:00:75", "nan", "inf", "12s", "1e3"])
def test_bad_times_are_invalid_trim(text: str) -> None:
    with pytest.raises(InvalidTrim):
        parse_time(text, name="start")


def test_negative_number_is_invalid_trim() -> None:
    with pytest.raises(InvalidTrim):
        parse_time(-0.5)


@pytest.mark.parametrize(
    ("text", "rgb"),
    [
        ("#1E90FF", (30, 144, 255)),
        ("#1e90ff", (30, 144, 255)),
        ("#FFF", (255, 255, 255)),
        ("#0a0", (0, 170, 0)),
        ("00FF00", (0, 255, 0)),
    ],
)
def test_hex_colours(text: str, rgb: tuple[int, int, int]) -> None:
    assert parse_hex_colour(text) == rgb


@pytest.mark.parametrize("text", ["#12", "#GGGGGG", "blue", "#1234567", "#12345"])
def test_bad_colours(text: str) -> None:
    with pytest.raises(InvalidBackground):
        parse_hex_colour(text)


def test_background_choice() -> None:
    assert Background.parse().kind == "white"
    assert Background.parse(colour="#000").colour == (0, 0, 0)
    assert Background.parse(image_url="bg.png").image_url == "bg.png"
    with pytest.raises(InvalidBackground, match="not both"):
        Background.parse(colour="#000", image_url="bg.png")


def test_job_spec_validates_everything() -> None:
    spec = JobSpec.build("in.mp4", "out.mp4", colour="#123", start="00:01", end="2.5")
    assert (spec.start, spec.end, spec.background.colour) == (1.0, 2.5, (17, 34, 51))
    with pytest.raises(InvalidTrim):
        JobSpec.build("in.mp4", "out.mp4", start="soon")


def test_quality_is_fast_best_or_unset_and_round_trips() -> None:
    assert JobSpec.build("in.mp4", "out.mp4").quality is None
    spec = JobSpec.build("in.mp4", "out.mp4", colour="#123", end="2", quality="best")
    assert spec.quality == "best"
    assert JobSpec.from_dict(spec.to_dict()) == spec
    assert JobSpec.from_dict(JobSpec.build("a", "b").to_dict()).quality is None
    for bad in ("ultra", "", "FAST ", 3):
        if bad == "FAST ":
            assert JobSpec.build("a", "b", quality=bad).quality == "fast"  # type: ignore[arg-type]
            continue
        with pytest.raises(errors.InvalidRequest, match="quality must be one of fast, best") as info:
            JobSpec.build("a", "b", quality=bad)  # type: ignore[arg-type]
        assert info.value.code == "invalid_request"


def test_errors_pickle_with_code_and_message() -> None:
    for cls in (
        errors.InvalidInput,
        errors.InvalidTrim,
        errors.InputTooLarge,
        errors.DecodeFailed,
        errors.EncodeFailed,
        errors.JobCancelled,
        errors.InternalError,
        errors.InvalidOutput,
    ):
        err = cls("something specific")
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls
        assert (back.code, back.message, str(back)) == (err.code, "something specific", "something specific")


def test_codes_are_unique_and_user_errors_exit_2() -> None:
    assert len(set(errors.ALL_CODES)) == len(errors.ALL_CODES)
    assert errors.InvalidInput.exit_code == 2
    assert errors.InternalError.exit_code == 1


def test_as_service_error_digs_out_the_cause() -> None:
    class FakeRayTaskError(Exception):
        def __init__(self, cause: BaseException) -> None:
            super().__init__("wrapped")
            self.cause = cause

    inner = errors.InvalidInput("bad file")
    assert errors.as_service_error(FakeRayTaskError(inner)) is inner
    assert errors.as_service_error(ValueError("boom")).code == "internal"
    hidden = errors.as_service_error(FakeRayTaskError(KeyError("frame 12")))
    assert (hidden.code, hidden.message) == ("internal", "KeyError: 'frame 12'")


def test_output_formats_table() -> None:
    table = {k: (v.extension, v.content_type) for k, v in OUTPUT_FORMATS.items()}
    assert table == {
        "mp4": (".mp4", "video/mp4"),
        "webm": (".webm", "video/webm"),
        "mov": (".mov", "video/quicktime"),
        "matte": (".mp4", "video/mp4"),
    }


@pytest.mark.parametrize(
    ("output", "fmt", "expected"),
    [
        ("o.mp4", None, "mp4"),
        ("s3://b/o.WEBM", None, "webm"),
        ("o.mov", None, "mov"),
        ("o.mkv", None, "mp4"),
        ("o.mp4", "matte", "matte"),
        ("o.mp4", "MP4", "mp4"),
        ("o", "webm", "webm"),
        ("o.webm", "webm", "webm"),
    ],
)
def test_the_extension_implies_the_format(output: str, fmt: str | None, expected: str) -> None:
    assert JobSpec.build("in.mp4", output, output_format=fmt).output_format == expected


@pytest.mark.parametrize(
    ("output", "fmt"), [("o.mp4", "webm"), ("o.webm", "matte"), ("o.mov", "x"), ("o", "")]
)
def test_a_contradicting_or_unknown_format_is_invalid_output(output: str, fmt: str) -> None:
    with pytest.raises(InvalidOutput):
        JobSpec.build("in.mp4", output, output_format=fmt)


def test_render_follows_format_and_background() -> None:
    assert JobSpec.build("i", "o.webm").render == "transparent"
    assert JobSpec.build("i", "o.mov").render == "transparent"
    assert JobSpec.build("i", "o.webm", colour="#fff").render == "composite"
    assert JobSpec.build("i", "o.mov", background_blur=3).render == "composite"
    assert JobSpec.build("i", "o.mp4").render == "composite"
    assert JobSpec.build("i", "o.mp4", output_format="matte").render == "matte"


def test_new_fields_round_trip_through_the_dict_form() -> None:
    specs = [
        JobSpec.build("i.mp4", "o.webm", background_video_url="s3://b/v.mp4", fit="contain", start=1),
        JobSpec.build("i.mp4", "o.mov", image_url="bg.png", fit="cover"),
        JobSpec.build("i.mp4", "o.mp4", background_blur="40"),
        JobSpec.build("i.mp4", "o.mp4", output_format="matte", end=2),
    ]
    for spec in specs:
        assert JobSpec.from_dict(spec.to_dict()) == spec
    old = {"input_url": "i", "output_url": "o.mp4", "background": {"kind": "colour", "colour": [1, 2, 3],
           "image_url": None}, "start": None, "end": None}
    assert JobSpec.from_dict(old) == JobSpec.build("i", "o.mp4", colour="#010203")


def test_blur_strength_maps_to_a_sigma_relative_to_the_height() -> None:
    assert blur_sigma(10, 1080) == pytest.approx(10.8)
    assert blur_sigma(100, 360) == pytest.approx(36.0)
