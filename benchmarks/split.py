"""Matte quality per quality mode on a **tuning set** and a **held-out set**:
``python -m benchmarks.split [--set tuning|heldout|both] [--modes fast,best] [--frames N] [--variants]``.

No default is chosen on the held-out set: settings are compared with ``--set tuning --variants``; the
held-out set only reports. Every clip is built here from ``../shared/data`` and scikit-image's bundled
photos (``scikit-image==0.26.0``, a dev dependency; licences per image below):

Tuning set (the clips the defaults were chosen on before, plus DAVIS, which was used to choose settings):
  - CREMA-D actor 1001, sentences ANG, DIS, FEA, HAP (keyed by ``benchmarks.groundtruth``) over pans across
    the scikit-image photos coffee, chelsea, rocket, stereo_motorcycle;
  - ``DIS/chaplin``: over the Chaplin clip (two men walking: another person in the footage);
  - ``FEA/cup+rocket``: the coffee photo's cup cut out and placed against the side of the head (the halo
    case) over the rocket pan;
  - DAVIS 2016 dance-twirl (CC BY-NC 4.0), scored inside the dancer's box;
  - person-free pans: coffee, chelsea, stereo_motorcycle, immunohistochemistry.

Held-out set (sentences NEU and SAD, never in the tuning set; backgrounds and objects never tuned on):
  - ``NEU/tears``: over *Tears of Steel* (CC BY 3.0, Blender Foundation): hair over a busy, colourful
    background with actors in it (another person in the background footage);
  - ``SAD/vtest``: over OpenCV's ``vtest.avi`` (pedestrians walking behind the actor);
  - ``NEU/juggle-fast``: the actor swept sideways (up to ~30 px per frame) over the SAM 2 juggling clip
    (fast motion; another person, moving, behind);
  - objects behind the head, each placed against the side of the head, partly hidden by it:
    ``SAD/retina+hubble`` (scikit-image ``retina``, CC0, over a pan across ``hubble_deep_field``, NASA,
    public domain), ``NEU/clock+laptop`` (``clock``, public domain by its photographer, over the MediaPipe
    laptop clip's rug), ``SAD/coins+gesture`` (``coins``, no known copyright restrictions, over the
    MediaPipe gesture clip's dark background), ``NEU/horse+hubble`` (``horse``, CC0);
  - ``SAD/enters``: starts with 8 frames of a background with no person (the ``horse`` over a ``hubble``
    pan), then the actor slides in from the right;
  - person-free frames: the first 8 frames of ``SAD/enters`` and the object-over-background plates of
    the four object clips, without the actor.

Columns as in ``benchmarks.quality`` (MAD and MSE x1e3, IoU, boundary F, dtSSD x1e2, edge RGB error).
MODNet runs ~0.3-1 s per frame on the shared 2-core machine: keep ``--frames`` small.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from benchmarks.groundtruth import DATA, Keyed, composite_keyed, key_frame, pan_background
from benchmarks.quality import COLS, F32, PLATE_RGB, SHARD, U8, Clip, fmt_row, load_davis, score
from bgservice.matte import MatteConfig, Matter, composite
from bgservice.models import get_model

H, W = 360, 480
VIDEOS = DATA / "videos"
TUNING_SENTENCES = ("ANG", "DIS", "FEA", "HAP")
HELDOUT_SENTENCES = ("NEU", "SAD")


# --- model output cache (benchmark only: configurations differ after the models, not in them) -------------

class Cached:
    """Wraps a model: the same frames give the stored output (a copy) -- the variants then cost only
    their refinement."""

    def __init__(self, m: Any) -> None:
        self.m = m
        self.name = m.name
        self.input_size = m.input_size
        self.device = getattr(m, "device", "cpu")
        self._store: dict[tuple[str, bytes, Any], Any] = {}

    def _key(self, what: str, frames: U8, arg: Any = None) -> tuple[str, bytes, Any]:
        return (what, hashlib.blake2b(np.ascontiguousarray(frames).data, digest_size=16).digest()
                + bytes(str(frames.shape), "ascii"), arg)

    def _get(self, key: tuple[str, bytes, Any], fn: Callable[[], Any]) -> Any:
        if key not in self._store:
            self._store[key] = fn()
        v = self._store[key]
        return tuple(x.copy() for x in v) if isinstance(v, tuple) else v.copy()

    def predict(self, frames: U8) -> F32:
        return self._get(self._key("p", frames), lambda: self.m.predict(frames))  # type: ignore[no-any-return]

    def predict_at(self, frames: U8, side: int) -> F32:
        return self._get(self._key("a", frames, side), lambda: self.m.predict_at(frames, side))  # type: ignore

    def logits(self, frames: U8) -> Any:
        return self._get(self._key("l", frames), lambda: self.m.logits(frames))


_CACHE: dict[str, Cached] = {}


def cached(name: str, device: str = "cpu") -> Any:
    if name not in _CACHE:
        _CACHE[name] = Cached(get_model(name, "cpu"))
    return _CACHE[name]


def install_cache() -> None:
    import bgservice.matte.matter as matter

    matter.get_model = cached  # type: ignore[assignment]


# --- footage --------------------------------------------------------------------------------------------

def video_frames(name: str, start: int, n: int, *, crop: tuple[float, float, float] = (0.5, 0.5, 1.0),
                 step: int = 1) -> list[U8]:
    """``n`` frames of a shared video from ``start``, cropped to 4:3 (centre fx, fy; ``zoom`` >= 1 crops
    tighter) and resized to 480x360."""
    import decord

    vr = decord.VideoReader(str(VIDEOS / name))
    idx = [min(len(vr) - 1, start + i * step) for i in range(n)]
    raw = vr.get_batch(idx).asnumpy()
    del vr
    fx, fy, zoom = crop
    out = []
    for f in raw:
        fh, fw = f.shape[:2]
        ch = int(min(fh, fw * H / W) / zoom)
        cw = int(ch * W / H)
        y0 = int(np.clip(fy * fh - ch / 2, 0, fh - ch))
        x0 = int(np.clip(fx * fw - cw / 2, 0, fw - cw))
        out.append(np.ascontiguousarray(cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (W, H),
                                                   interpolation=cv2.INTER_AREA)))
    return out


def actor(emotion: str, start: int, n: int) -> list[Keyed]:
    import decord

    vr = decord.VideoReader(str(VIDEOS / f"talking_head_cremad_1001_DFA_{emotion}_XX.flv"))
    idx = [min(len(vr) - 1, start + i) for i in range(n)]
    raw = vr.get_batch(idx).asnumpy()
    del vr
    return [key_frame(f) for f in raw]


def shifted(k: Keyed, dx: float) -> Keyed:
    """The keyed actor moved ``dx`` px sideways (what leaves the frame is gone)."""
    m = np.array([[1, 0, dx], [0, 1, 0]], np.float32)
    a = cv2.warpAffine(k.alpha, m, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    fg = cv2.warpAffine(k.fg, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return Keyed(np.clip(a, 0, 1).astype(np.float32), fg.astype(np.float32))


def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)


def object_cutout(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8, alpha float32) of an object from scikit-image's data."""
    import skimage.data

    if name == "retina":
        img = _photo("retina")
        a = (img.max(axis=2) > 30).astype(np.float32)
    elif name == "clock":
        img = _photo("clock")  # the clock's face and case: an ellipse inside the photo
        h, w = img.shape[:2]
        a = np.zeros((h, w), np.float32)
        cv2.ellipse(a, (w // 2, h // 2), (int(w * 0.42), int(h * 0.46)), 0, 0, 360, 1.0, -1)
    elif name == "cup":  # tuning only: the cup and saucer of the coffee photo
        img = _photo("coffee")
        h, w = img.shape[:2]
        a = np.zeros((h, w), np.float32)
        cv2.ellipse(a, (int(w * 0.47), int(h * 0.5)), (int(w * 0.33), int(h * 0.42)), 0, 0, 360, 1.0, -1)
    elif name == "coins":
        img = _photo("coins")
        a = np.ones(img.shape[:2], np.float32)  # the tray of coins, a rectangular object
    elif name == "horse":
        sil = np.asarray(skimage.data.horse())  # True = background
        a = (~sil).astype(np.float32)
        img = np.zeros((*a.shape, 3), np.uint8)
        img[...] = (92, 58, 30)  # a brown horse
    else:
        raise ValueError(name)
    a = cv2.GaussianBlur(a, (3, 3), 0)
    return img, a


def place(bg: np.ndarray, obj: tuple[np.ndarray, np.ndarray], cx: int, cy: int, size: int) -> np.ndarray:
    """``obj`` scaled to ``size`` px on its long side, centred at (cx, cy), over ``bg``."""
    img, a = obj
    s = size / max(img.shape[:2])
    w, h = max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    a = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)[:, :, None]
    out = bg.astype(np.float32)
    x0, y0 = cx - w // 2, cy - h // 2
    ys, xs = slice(max(0, y0), min(H, y0 + h)), slice(max(0, x0), min(W, x0 + w))
    oy, ox = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
    out[ys, xs] = a[oy, ox] * img[oy, ox] + (1 - a[oy, ox]) * out[ys, xs]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def head_side(k: Keyed) -> tuple[int, int, int]:
    """A point against the right side of the actor's head, and the head's width."""
    a = k.alpha > 0.5
    rows = np.flatnonzero(a.any(axis=1))
    top = int(rows[0])
    y = min(H - 1, top + 60)
    xs = np.flatnonzero(a[y])
    return int(xs[-1]) + 10, y, int(xs[-1] - xs[0])


def compose(name: str, keyed: list[Keyed], bgs: list[U8]) -> Clip:
    frames = [composite_keyed(k, b) for k, b in zip(keyed, bgs, strict=True)]
    return Clip(name, frames, [k.alpha for k in keyed], [k.fg for k in keyed])


def tuning_clips(n: int) -> list[Clip]:
    clips = []
    for emo, bg in zip(TUNING_SENTENCES, ("coffee", "chelsea", "rocket", "stereo_motorcycle"), strict=True):
        k = actor(emo, 10, n)
        clips.append(compose(f"{emo}/{bg}", k, list(pan_background(bg, n, H, W))))
    # another person in the footage, for tuning: the Chaplin clip's two men (never in the held-out set)
    chaplin = video_frames("fullbody_two_people_chaplin_640x360.mp4", 100, n, crop=(0.5, 0.5, 1.3))
    clips.append(compose("DIS/chaplin", actor("DIS", 10, n), chaplin))
    # an object behind the head (the halo case) for tuning: the coffee photo's cup over the rocket pan
    k = actor("FEA", 20, n)
    cx, cy, hw = head_side(k[0])
    cup = object_cutout("cup")
    clips.append(compose("FEA/cup+rocket", k, [place(b, cup, cx - t, cy, int(hw * 1.3))
                                               for t, b in enumerate(pan_background("rocket", n, H, W))]))
    davis = load_davis(None)
    step = max(1, len(davis.frames) // (2 * n))  # every other frame or sparser: the spins stay hard
    sl = slice(0, 2 * n * step, step)
    clips.append(Clip("DAVIS dance-twirl", davis.frames[sl][:2 * n], davis.alpha[sl][:2 * n], None,
                      davis.box[sl][:2 * n] if davis.box else None))
    return clips


def tuning_empty(n: int) -> dict[str, list[U8]]:
    return {bg: list(pan_background(bg, n, H, W)) for bg in
            ("coffee", "chelsea", "stereo_motorcycle", "immunohistochemistry")}


SPECIAL = ("NEU/juggle-fast", "SAD/enters")  # not plain talking heads: left out of the halo ratio's base
OBJECT_CLIPS = ("FEA/cup+rocket", "SAD/retina+hubble", "NEU/clock+laptop", "SAD/coins+gesture",
                "NEU/horse+hubble")


def _object_plates(n: int) -> dict[str, tuple[str, list[U8], tuple[np.ndarray, np.ndarray]]]:
    hubble = list(pan_background_photo("hubble_deep_field", n))
    return {
        "SAD/retina+hubble": ("SAD", hubble, object_cutout("retina")),
        "NEU/clock+laptop": ("NEU", video_frames("landscape_1080p_person_laptop_mediapipe.mp4", 0, n,
                                                 crop=(0.75, 0.8, 2.0)), object_cutout("clock")),
        "SAD/coins+gesture": ("SAD", video_frames("upper_body_dark_bg_gesture_mediapipe_1280x720.mp4", 0, n,
                                                  crop=(0.12, 0.3, 2.5)), object_cutout("coins")),
        "NEU/horse+hubble": ("NEU", hubble[::-1], object_cutout("horse")),
    }


def pan_background_photo(name: str, n: int) -> Iterator[U8]:
    """A slow pan across a scikit-image photo not in the tuning set."""
    img = _photo(name)
    ih, iw = img.shape[:2]
    base = max(H / ih, W / iw) * 1.3
    for t in range(n):
        s = base * (1.0 + 0.002 * t)
        m = np.array([[s, 0, -(0.1 * (iw * s - W) + 1.5 * t)], [0, s, -0.3 * (ih * s - H)]], np.float32)
        yield cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def heldout_clips(n: int) -> tuple[list[Clip], dict[str, list[U8]]]:
    clips: list[Clip] = []
    empty: dict[str, list[U8]] = {}
    neu, sad = actor("NEU", 10, n), actor("SAD", 10, n)
    clips.append(compose("NEU/tears", neu, video_frames("hair_busy_bg_tears_of_steel_640x360.mp4", 0, n)))
    clips.append(compose("SAD/vtest", sad, video_frames("several_people_walking_vtest_768x576.avi", 100, n,
                                                        crop=(0.5, 0.6, 1.4))))
    fast = [shifted(k, 60.0 * np.sin(2 * np.pi * t / 12)) for t, k in enumerate(actor("NEU", 20, n))]
    clips.append(compose("NEU/juggle-fast", fast, video_frames("fullbody_juggle_sam2_1280x720.mp4", 60, n,
                                                               crop=(0.5, 0.5, 1.6))))
    for name, (emo, bgs, obj) in _object_plates(n).items():
        k = neu if emo == "NEU" else sad
        cx, cy, hw = head_side(k[0])
        size = int(hw * 1.3)
        plates = [place(b, obj, cx - t, cy, size) for t, b in enumerate(bgs)]  # drifts behind the head
        clips.append(compose(name, k, plates))
        empty[name.split("/")[1]] = plates[: max(4, n // 3)]
    # starts without a person: 8 frames of background (horse over hubble), then the actor slides in
    horse = object_cutout("horse")
    plates = [place(b, horse, 120, 200, 150) for b in pan_background_photo("hubble_deep_field", n + 8)]
    ks = actor("SAD", 10, n + 8)
    seq = []
    for t, k in enumerate(ks):
        if t < 8:
            seq.append(Keyed(np.zeros((H, W), np.float32), k.fg))
        else:
            seq.append(shifted(k, max(0.0, W * (1 - (t - 8) / 6))))
    clips.append(compose("SAD/enters", seq, plates))
    empty["enters (frames 0-7)"] = plates[:8]
    return clips, empty


# --- running -----------------------------------------------------------------------------------------------

def run_pipeline(matter: Matter, frames: list[U8], plate: U8) -> tuple[list[F32], list[U8]]:
    """Matter + composite on shards of 16 with their context and start index, as the pipeline calls them."""
    alphas: list[F32] = []
    comps: list[U8] = []
    empty = np.empty((0, *frames[0].shape), np.uint8)
    for s in range(0, len(frames), SHARD):
        e = min(len(frames), s + SHARD)
        b = frames[max(0, s - matter.context_before):s]
        a = frames[e:e + matter.context_after]
        al, fg = matter(np.stack(frames[s:e]), np.stack(b) if b else empty, np.stack(a) if a else empty, s)
        alphas.extend(al)
        comps.extend(composite(fg, al, plate))
    return alphas, comps


def matter_for(cfg: MatteConfig) -> Matter:
    main = cached("modnet" if cfg.quality == "best" else "selfie")
    return Matter(main, cfg)


def empty_share(matter: Matter, frames: list[U8], scale: int = 1) -> float:
    """Share of pixels with alpha > 0.5 over person-free frames (run as one clip with context)."""
    plate = np.zeros((H, W, 3), np.uint8)
    alphas, _ = run_scaled(matter, frames, plate, scale)
    return float(np.mean([(a > 0.5).mean() for a in alphas])) * 100


def upscaled(frames: list[U8], k: int) -> list[U8]:
    """The frames ``k`` times larger (bicubic): the same scenes at HD sizes (``--scale``)."""
    if k <= 1:
        return frames
    return [np.asarray(cv2.resize(f, (f.shape[1] * k, f.shape[0] * k), interpolation=cv2.INTER_CUBIC))
            for f in frames]


def run_scaled(matter: Matter, frames: list[U8], plate: U8, k: int) -> tuple[list[F32], list[U8]]:
    """:func:`run_pipeline` on the frames ``k`` times larger, alphas and composites brought back to the
    ground truth's size (area average) for scoring."""
    if k <= 1:
        return run_pipeline(matter, frames, plate)
    big = upscaled([plate], k)[0]
    alphas, comps = run_pipeline(matter, upscaled(frames, k), big)
    h, w = frames[0].shape[:2]
    back = [np.asarray(cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA), np.float32) for a in alphas]
    return back, [np.asarray(cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA)) for c in comps]


def run_set(clips: list[Clip], empties: dict[str, list[U8]], cfgs: dict[str, MatteConfig],
            scale: int = 1) -> None:
    """Score each configuration on each clip and the person-free frames; ``scale``: run on the frames
    upscaled this many times (``--scale``), scored at the clips' own size."""
    plate = np.empty((H, W, 3), np.uint8)
    plate[...] = PLATE_RGB
    means: dict[str, list[dict[str, float]]] = {k: [] for k in cfgs}
    for clip in clips:
        fh, fw = clip.frames[0].shape[:2]
        print(f"\n**{clip.name}** ({len(clip.frames)} frames, {fw}x{fh})"
              f"\n\n| mode | " + " | ".join(COLS) + " |\n|---|" + "---|" * len(COLS), flush=True)
        for label, cfg in cfgs.items():
            m = matter_for(cfg)
            pl = np.empty((*clip.frames[0].shape[:2], 3), np.uint8)
            pl[...] = PLATE_RGB
            alphas, comps = run_scaled(m, clip.frames, pl, scale)
            s = score(clip, alphas, comps, pl if clip.gt_fg is not None else None)
            if clip.box is None:
                means[label].append(s)
            print(fmt_row(label, s), flush=True)
    print("\n**mean over the talking-head composites**\n\n| mode | " + " | ".join(COLS) + " |\n|---|"
          + "---|" * len(COLS))
    for label, rows in means.items():
        if rows:
            print(fmt_row(label, {c: float(np.nanmean([r.get(c, np.nan) for r in rows])) for c in COLS}))
    obj = [c.name for c in clips if c.name in OBJECT_CLIPS]
    if obj:
        print("\n**halo: MAD on clips with an object behind the head / MAD on the plain talking heads**\n")
        print("| mode | objects | others | ratio |\n|---|---|---|---|")
        names = [c.name for c in clips if c.box is None]
        for label, rows in means.items():
            o = [r["MAD"] for nm, r in zip(names, rows, strict=True) if nm in OBJECT_CLIPS]
            e = [r["MAD"] for nm, r in zip(names, rows, strict=True) if nm not in (*OBJECT_CLIPS, *SPECIAL)]
            print(f"| {label} | {np.mean(o):.2f} | {np.mean(e):.2f} | {np.mean(o) / np.mean(e):.2f} |")
    print("\n**person-free frames: share of pixels with alpha > 0.5 (target: <= 1 %)**\n")
    print("| background | " + " | ".join(cfgs) + " |\n|---|" + "---|" * len(cfgs))
    for bg, frames in empties.items():
        cells = [f"{empty_share(matter_for(cfg), frames, scale):.1f} %" for cfg in cfgs.values()]
        print(f"| {bg} | " + " | ".join(cells) + " |", flush=True)


class EagerGate(Matter):
    """fast mode's gate as before issue 12: the prior asked on every sampled frame (same alphas, more
    MODNet calls) -- a timing reference only."""

    @property
    def _prior_borrowed(self) -> bool:
        return True


def cpu_ms_1080p(cfgs: dict[str, MatteConfig], n: int, reps: int = 3) -> None:
    """CPU time (process time: every thread, models included) per 1080p frame, fresh models (no cache).
    The modes take turns in each repetition (the shared machine's load drifts); best of ``reps``."""
    import bgservice.matte.matter as matter_mod

    matter_mod.get_model = get_model  # type: ignore[assignment]
    src = actor("NEU", 10, n)
    bgs = video_frames("hair_busy_bg_tears_of_steel_640x360.mp4", 0, n)
    frames = [cv2.resize(composite_keyed(k, b), (1920, 1080), interpolation=cv2.INTER_LINEAR)
              for k, b in zip(src, bgs, strict=True)]
    plate = np.zeros((1080, 1920, 3), np.uint8)
    print("\n**CPU ms per 1080p frame** (process time, all threads, models included; "
          f"{n} frames of NEU/tears upscaled, one shard without context frames; modes in turn, best of "
          f"{reps})\n")
    print("| mode | CPU ms / frame | wall ms / frame |\n|---|---|---|")
    stack = np.stack(frames)
    empty = stack[:0]
    matters: dict[str, Matter] = {}
    for label, cfg in cfgs.items():
        kind = EagerGate if label.startswith(EAGER_LABEL) else Matter
        m = matters[label] = kind(get_model("modnet" if cfg.quality == "best" else "selfie", "cpu"), cfg)
        m(stack[:2], empty, empty, 0)  # warm-up (sessions, first-touch pages)
        m(stack, empty, empty, 0)
    best = {label: (1e9, 1e9) for label in cfgs}
    for _ in range(reps):
        for label, m in matters.items():
            c0, t0 = time.process_time(), time.perf_counter()
            a, fg = m(stack, empty, empty, 0)
            composite(fg, a, plate)
            best[label] = min(best[label], (time.process_time() - c0, time.perf_counter() - t0))
    for label, (cpu, wall) in best.items():
        print(f"| {label} | {cpu / n * 1e3:.0f} | {wall / n * 1e3:.0f} |", flush=True)


EAGER_LABEL = "fast before issue 12"


def variants() -> dict[str, MatteConfig]:
    fast, best = MatteConfig.fast(), MatteConfig.best()
    return {
        "fast (before: no prior; no gate)": MatteConfig(),
        "fast": fast,
        "fast; prior grow 0.06": replace(fast, prior_mask=True, prior_grow=0.06),
        "best": best,
        "best raw (bilinear)": replace(MatteConfig.raw(), quality="best"),
        "best; MODNet crop model": replace(best, crop_model="modnet"),
        "best - guided": replace(best, guided=False, sharpen=1.0),
        "best - sharpen": replace(best, sharpen=1.0),
        "best - temporal": replace(best, temporal=False),
        "best - crop pass": replace(best, crop_pass=False),
        "fast; prior mask": replace(fast, prior_mask=True),
        "fast; prior components": replace(fast, prior_components=True),
    }


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.split")
    ap.add_argument("--set", choices=("tuning", "heldout", "both", "none"), default="both")
    ap.add_argument("--frames", type=int, default=16, help="frames per clip (DAVIS: 2x, subsampled)")
    ap.add_argument("--variants", action="store_true", help="compare settings (tuning set only)")
    ap.add_argument("--only", default="", help="comma-separated config labels to run")
    ap.add_argument("--timing", type=int, default=0, help="also time N 1080p frames per mode")
    ap.add_argument("--no-empty", action="store_true")
    ap.add_argument("--davis-only", action="store_true", help="tuning set: only the DAVIS clip")
    ap.add_argument("--scale", type=int, default=1,
                    help="run on the frames upscaled this many times (3: 1440x1080), scored at 480x360")
    args = ap.parse_args()
    scale = max(1, args.scale)
    cv2.setNumThreads(1)
    install_cache()
    cfgs = variants() if args.variants else {"fast": MatteConfig.fast(), "best": MatteConfig.best()}
    if args.only:
        keep = [s.strip() for s in args.only.split(",")]  # labels hold no commas
        cfgs = {k: v for k, v in cfgs.items() if k in keep}
    if args.variants and args.set != "tuning":
        raise SystemExit("--variants only on the tuning set: no setting is chosen on held-out clips")
    if args.set in ("tuning", "both"):
        print("\n## Tuning set\n")
        clips = tuning_clips(args.frames)
        if args.davis_only:
            clips = [c for c in clips if c.box is not None]
        run_set(clips, {} if args.no_empty else
                {k: v[: max(4, args.frames // 2)] for k, v in tuning_empty(args.frames).items()}, cfgs, scale)
    if args.set in ("heldout", "both"):
        print("\n## Held-out set\n")
        clips, empties = heldout_clips(args.frames)
        run_set(clips, {} if args.no_empty else empties, cfgs, scale)
    if args.timing:
        cpu_ms_1080p({"fast before issue 11 (no gate)": MatteConfig(),
                      f"{EAGER_LABEL} (gate asks MODNet on every 4th frame)": MatteConfig.fast(),
                      "fast": MatteConfig.fast(), "best": MatteConfig.best()}, args.timing)


if __name__ == "__main__":
    main()
