"""Background plates: colour fill, images (EXIF orientation, transparency, formats) stretched to the frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgservice.backgrounds import fit_image, load_plate
from bgservice.errors import InputTooLarge, InvalidBackgroundImage
from bgservice.settings import Settings
from bgservice.spec import Background


def test_white_and_colour(settings: Settings) -> None:
    assert (load_plate(Background(), 6, 4, settings) == 255).all()
    plate = load_plate(Background.parse(colour="#1E90FF"), 6, 4, settings)
    assert plate.shape == (4, 6, 3)
    assert (plate == (30, 144, 255)).all()


def _halves(w: int, h: int) -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_image_is_stretched_to_the_frame(tmp_path: Path, settings: Settings, fmt: str) -> None:
    path = tmp_path / f"bg.{fmt.lower()}"
    _halves(40, 10).save(path, fmt, quality=95)
    plate = load_plate(Background.parse(image_url=str(path)), 64, 48, settings)
    assert plate.shape == (48, 64, 3)
    left, right = plate[:, :28].reshape(-1, 3).mean(0), plate[:, 36:].reshape(-1, 3).mean(0)
    assert left[0] > 200 and left[2] < 50
    assert right[2] > 200 and right[0] < 50


def test_exif_orientation_is_applied(tmp_path: Path, settings: Settings) -> None:
    # Stored landscape red|blue with orientation 6 (rotate 90 clockwise to display): red ends on top.
    img = _halves(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    img.save(path, "JPEG", exif=exif.tobytes(), quality=95)
    plate = load_plate(Background.parse(image_url=str(path)), 20, 40, settings)
    top, bottom = plate[:16].reshape(-1, 3).mean(0), plate[24:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_transparency_is_flattened_over_white(tmp_path: Path, settings: Settings) -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 5:, 3] = 255  # right half opaque red, left half fully transparent
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    plate = load_plate(Background.parse(image_url=str(path)), 10, 10, settings)
    assert (plate[:, :4] == 255).all()
    assert (plate[:, 6:] == (255, 0, 0)).all()


def test_unreadable_and_unsupported_images(tmp_path: Path, settings: Settings) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    gif = tmp_path / "anim.gif"
    _halves(8, 8).save(gif, "GIF")
    for path in (junk, gif, tmp_path / "missing.png"):
        with pytest.raises(InvalidBackgroundImage):
            load_plate(Background.parse(image_url=str(path)), 8, 8, settings)


def test_oversized_image_file(tmp_path: Path) -> None:
    path = tmp_path / "bg.png"
    _halves(64, 64).save(path)
    tiny = Settings(max_background_image_bytes=10, tmp_dir=tmp_path / "s")
    with pytest.raises(InputTooLarge):
        load_plate(Background.parse(image_url=str(path)), 8, 8, tiny)


def _disc(width: int, height: int, centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    img = np.full((height, width, 3), 200, np.uint8)
    img[(xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2] = (20, 40, 230)  # blue: not a bar
    return img


def _extent(plate: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero((plate[..., 2] > 130) & (plate[..., 0] < 110))
    return int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


@pytest.mark.parametrize("size", [(480, 360), (360, 640)])
def test_cover_and_contain_keep_a_circle_round_and_stretch_does_not(size: tuple[int, int]) -> None:
    w, h = size
    image = _disc(800, 400, (400, 200), 60)  # 2:1, the disc in the middle
    cover, contain, stretched = (fit_image(image, w, h, f) for f in ("cover", "contain", "stretch"))
    for plate in (cover, contain, stretched):
        assert plate.shape == (h, w, 3)
    cw, ch = _extent(cover)
    assert abs(cw - ch) <= 2 and abs(ch - 120 * max(w / 800, h / 400)) <= 2  # cover: fills the frame
    kw, kh = _extent(contain)
    assert abs(kw - kh) <= 2 and abs(kw - 120 * min(w / 800, h / 400)) <= 2  # contain: fits whole
    bar = (h - round(400 * w / 800)) // 2
    assert bar > 0 and contain[: bar - 1].max() == 0 and contain[h - bar + 1 :].max() == 0
    assert contain[h // 2, 2].min() == 200 and cover[1, 1].min() == 200  # image edge to edge
    sw, sh = _extent(stretched)
    assert abs(sw / sh - (w / 800) / (h / 400)) < 0.05  # squashed by the frame's aspect


def test_fit_keeps_shapes_as_displayed_with_anamorphic_pixels() -> None:
    from fractions import Fraction

    image = _disc(400, 400, (200, 200), 100)
    plate = fit_image(image, 352, 288, "contain", dst_sar=Fraction(12, 11))
    w, h = _extent(plate)
    assert abs(w * 12 / 11 - h) <= 3  # round on screen, where a pixel is 12/11 wide


def test_fit_image_with_a_background_image(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "bg.png"
    Image.fromarray(_disc(300, 100, (150, 50), 40)).save(path)
    plate = load_plate(Background.parse(image_url=str(path), fit="contain"), 200, 200, settings)
    w, h = _extent(plate)
    assert abs(w - h) <= 2 and plate[:60].max() == 0
