"""The background plate a job composites over: white, a solid colour, or an image stretched to the frame."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bgservice.errors import InvalidBackgroundImage
from bgservice.settings import Settings
from bgservice.spec import Background
from bgservice.storage import local_input

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})


def decode_image(path: str) -> np.ndarray:
    """Read a JPEG/PNG/WebP as RGB uint8: EXIF orientation applied, transparency flattened over white."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format not in SUPPORTED_FORMATS:
                    raise InvalidBackgroundImage(
                        f"background image must be JPEG, PNG or WebP, got {img.format or 'unknown'}"
                    )
                img.load()
                oriented = ImageOps.exif_transpose(img)
                has_alpha = oriented.mode in ("RGBA", "LA", "PA") or (
                    oriented.mode == "P" and "transparency" in oriented.info
                )
                if has_alpha:
                    rgba = oriented.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    rgb = Image.alpha_composite(white, rgba).convert("RGB")
                else:
                    rgb = oriented.convert("RGB")
                return np.asarray(rgb, dtype=np.uint8)
    except InvalidBackgroundImage:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        SyntaxError,
    ) as exc:
        raise InvalidBackgroundImage(f"background image cannot be read: {exc}") from exc


def stretch(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to exactly ``width`` x ``height`` (aspect not kept: the product stretches to the frame)."""
    if image.shape[1] == width and image.shape[0] == height:
        return np.ascontiguousarray(image)
    shrinking = image.shape[1] * image.shape[0] > width * height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interpolation)


def load_plate(
    background: Background,
    width: int,
    height: int,
    settings: Settings,
    *,
    untrusted: bool = False,
    resolve_asset: Callable[[str], str] | None = None,
) -> np.ndarray:
    """uint8 [height, width, 3] RGB plate for the job's background. ``untrusted``: a stranger's job (the
    image URL goes through the safe fetcher's rules; ``resolve_asset`` maps asset ids to storage)."""
    if background.kind != "image" or background.image_url is None:
        plate = np.empty((height, width, 3), dtype=np.uint8)
        plate[:] = background.colour
        return plate
    with local_input(
        background.image_url,
        settings,
        max_bytes=settings.max_background_image_bytes,
        limit_name="BGSERVICE_MAX_BACKGROUND_IMAGE_BYTES",
        error=InvalidBackgroundImage,
        what="background image",
        service="image" if untrusted else None,
        field="imageUrl",
        resolve_asset=resolve_asset,
    ) as path:
        image = decode_image(path)
    return stretch(image, width, height)
