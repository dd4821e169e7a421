"""Ground truth for the matte: a chroma keyer for the CREMA-D green-screen clips, moving backgrounds
without people, and the composites the pipeline is scored on.

The keyer (documented here because the numbers depend on it):

1. Convert to YCbCr (float32). Pixels whose CbCr lie within ``core`` of the clip's key colour (the median
   CbCr of the frame border, which is all screen in these clips) are certainly screen.
2. The screen is unevenly lit (darker corners, wrinkles), so the key colour is estimated *locally*: a
   normalised box blur of the CbCr of the certain-screen pixels gives a smooth screen plate
   ``key_cbcr(x, y)`` and the same for RGB, ``screen_rgb(x, y)``.
3. Alpha is a soft ramp of the CbCr distance to the local key: 0 below ``lo``, 1 above ``hi``, linear
   in between. VP6 stores chroma at half resolution, so the distance is computed on chroma that is first
   smoothed with a 3x3 box (the ramp then spans about two pixels at a hard edge, as a real edge does).
   Only the largest connected body (alpha > 0.5, dilated 2 px) is kept, which drops specks where the
   screen is in deep shadow. Holes are not filled: the subject (face, dark grey shirt, hair) is far
   from green.
4. Foreground colour: where 0 < alpha < 1 the screen's contribution is unmixed,
   ``F = (I - (1 - alpha) * screen_rgb) / alpha``, then despilled (``G <= (R + B) / 2``) everywhere.
5. The composite over a new background B is ``alpha * F + (1 - alpha) * B``: hair keeps its soft edge and
   carries no green fringe, as if the actor had been filmed in front of B.

Thresholds (``lo=12``, ``hi=30`` in CbCr units, ``core=10``) were tuned by eye on PNGs of alpha and
composites (written by ``python -m benchmarks.quality --pngs /tmp/...``): the darkest screen corners sit
at distance 8-11 from the border median, the dark grey shirt at ~45, skin and hair at 70+.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CREMAD = sorted((DATA / "videos").glob("talking_head_cremad_*.flv"))
DAVIS = DATA / "matting_gt" / "davis2016_dance-twirl"


@dataclass(frozen=True)
class Keyed:
    alpha: np.ndarray  # float32 [H,W] 0..1
    fg: np.ndarray  # float32 [H,W,3] 0..255, despilled foreground colour


def _local_key(
    crcb: np.ndarray, f: np.ndarray, screen: np.ndarray, k: int, key0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The screen's colour around each pixel (CrCb, RGB): the mean over the screen pixels of a k x k box;
    where no screen is nearby (deep inside the subject) the global key."""
    wsum = cv2.blur(screen, (k, k)) + np.float32(1e-6)
    local_crcb = cv2.blur(crcb * screen[:, :, None], (k, k)) / wsum[:, :, None]
    local_rgb = cv2.blur(f * screen[:, :, None], (k, k)) / wsum[:, :, None]
    far = wsum < 0.02
    local_crcb[far] = key0
    local_rgb[far] = np.median(f[screen > 0], axis=0)
    return local_crcb, local_rgb


def key_frame(rgb: np.ndarray, *, lo: float = 12.0, hi: float = 30.0, core: float = 10.0) -> Keyed:
    """Key one green-screen frame (uint8 RGB [H,W,3]) into alpha and foreground colour."""
    f = rgb.astype(np.float32)
    ycc = cv2.cvtColor(f, cv2.COLOR_RGB2YCrCb)  # float input: Cr/Cb offset 0.5*255 -> same scale as uint8
    crcb = cv2.blur(ycc[:, :, 1:], (3, 3))
    border = np.concatenate([crcb[:8].reshape(-1, 2), crcb[-8:].reshape(-1, 2),
                             crcb[:, :8].reshape(-1, 2), crcb[:, -8:].reshape(-1, 2)])
    key0 = np.median(border, axis=0).astype(np.float32)
    d0 = np.linalg.norm(crcb - key0, axis=2)
    screen = (d0 < core).astype(np.float32)
    k = max(rgb.shape[:2]) // 8 * 2 + 1
    local_crcb, local_rgb = _local_key(crcb, f, screen, k, key0)
    # second round: what is close to the *local* key is screen too (dark corners, folds)
    screen = (np.linalg.norm(crcb - local_crcb, axis=2) < core).astype(np.float32)
    local_crcb, local_rgb = _local_key(crcb, f, screen, k, key0)
    d = np.linalg.norm(crcb - local_crcb, axis=2)
    alpha = np.clip((d - lo) / np.float32(hi - lo), 0.0, 1.0).astype(np.float32)
    # the actor is one connected body: drop specks of screen noise that pass the ramp
    n, lab, stats, _ = cv2.connectedComponentsWithStats((alpha > 0.5).astype(np.uint8), connectivity=8)
    if n > 2:
        keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        body = cv2.dilate((lab == keep).astype(np.uint8), np.ones((5, 5), np.uint8))
        alpha *= body.astype(np.float32)
    a3 = alpha[:, :, None]
    fg = np.where(a3 > 0, (f - (1.0 - a3) * local_rgb) / np.maximum(a3, np.float32(1e-3)), f)
    fg = np.clip(fg, 0.0, 255.0)
    fg[:, :, 1] = np.minimum(fg[:, :, 1], 0.5 * (fg[:, :, 0] + fg[:, :, 2]))
    return Keyed(alpha=alpha, fg=fg.astype(np.float32))


# --- moving backgrounds without people -------------------------------------------------------------

def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


PHOTOS = ("coffee", "chelsea", "rocket", "stereo_motorcycle", "immunohistochemistry")


def pan_background(name: str, n: int, h: int, w: int, *, speed: float = 2.0) -> Iterator[np.ndarray]:
    """A camera pan across a photo (no people in it): sub-pixel horizontal+vertical drift with a slow zoom."""
    if name == "synthetic":
        yield from synthetic_background(n, h, w)
        return
    if name == "stereo_motorcycle":
        import skimage.data

        img = np.ascontiguousarray(skimage.data.stereo_motorcycle()[0][:, :, :3])
    else:
        img = _photo(name)
    ih, iw = img.shape[:2]
    base = max(h / ih, w / iw) * 1.35  # room to move
    for t in range(n):
        s = base * (1.0 + 0.002 * t)
        span_x = iw * s - w
        span_y = ih * s - h
        tx = -(0.1 * span_x + min(speed * t, 0.8 * span_x))
        ty = -(0.3 * span_y + 0.2 * span_y * np.sin(t / 15.0))
        m = np.array([[s, 0, tx], [0, s, ty]], np.float32)
        yield cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def synthetic_background(n: int, h: int, w: int) -> Iterator[np.ndarray]:
    """Textured synthetic motion: coloured gravel texture scrolling one way, stripes sweeping the other."""
    import skimage.data

    tex = skimage.data.gravel().astype(np.float32)
    tex = cv2.resize(tex, (tex.shape[1] * 2, tex.shape[0] * 2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for t in range(n):
        m = np.array([[1, 0, -3.0 * t], [0, 1, -1.0 * t]], np.float32)
        g = cv2.warpAffine(tex, m, (w, h), borderMode=cv2.BORDER_WRAP)
        stripes = 0.5 + 0.5 * np.sin((xx + yy * 0.5 - 6.0 * t) / 9.0)
        r = 0.55 * g + 90 * stripes
        gg = 0.35 * g + 120 * (1 - stripes) + 20
        b = 0.6 * g + 60 * np.cos((yy - 4.0 * t) / 23.0) + 60
        yield np.clip(np.stack([r, gg, b], axis=2), 0, 255).astype(np.uint8)


def composite_keyed(k: Keyed, bg: np.ndarray) -> np.ndarray:
    """The ground-truth composite: the keyed actor over a new background (uint8 RGB)."""
    a = k.alpha[:, :, None]
    out = a * k.fg + (1.0 - a) * bg.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
