"""Background plates: colour fill, images (EXIF orientation, transparency, formats) stretched to the frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgservice.backgrounds import load_plate
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
