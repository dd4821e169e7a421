"""Matte quality against ground truth: ``python -m benchmarks.quality [--frames N] [--pngs DIR]``.

Runs the real path (``Matter`` on shards with context frames, as the pipeline and the Ray DAG feed it,
then ``composite``) on:

- the six CREMA-D green-screen talking heads, keyed (``benchmarks.groundtruth``) and composited over
  moving backgrounds without people (pans across scikit-image photos, one synthetic textured motion);
- the DAVIS 2016 dance-twirl frames with hand-made masks, scored inside the dancer's bounding box
  enlarged by 25% (only the dancer is annotated; the crowd behind is people too).

For each clip it prints MAD (x1e3), MSE (x1e3), IoU@0.5, boundary F, dtSSD (x1e2), and the composite's
colour error at the edges (mean |RGB| error, 0..255, inside the ground truth's 0<alpha<1 band dilated by
3 px, over a new blue plate: what fringe and spill a viewer sees) for the raw mask upsampled bilinearly,
the full refinement, and the full refinement with each step switched off. Then milliseconds per 1080p
frame for each step on this machine.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.groundtruth import CREMAD, DAVIS, PHOTOS, Keyed, composite_keyed, key_frame, pan_background
from bgservice.matte import MatteConfig, Matter, composite
from bgservice.matte import metrics as M
from bgservice.models import SegmentationModel, get_model

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

SHARD = 16  # frames per shard, as the pipeline cuts them (context frames around each)
PLATE_RGB = (30, 80, 200)


def configs() -> dict[str, MatteConfig]:
    full = MatteConfig()
    return {
        "raw (bilinear)": MatteConfig.raw(),
        "full": full,
        "- guided": replace(full, guided=False),
        "- temporal": replace(full, temporal=False),
        "- fusion": replace(full, fusion=False),
        "- crop pass": replace(full, crop_pass=False),
        "- ensemble": replace(full, ensemble=False),
    }


@dataclass
class Clip:
    name: str
    frames: list[U8]
    alpha: list[F32]
    gt_fg: list[F32] | None  # keyed foreground colour (green-screen clips) for the composite error
    box: list[tuple[int, int, int, int]] | None = None  # scoring region per frame (DAVIS)


@dataclass
class Scores:
    rows: dict[str, list[float]] = field(default_factory=dict)


def shards(frames: list[U8], size: int, before: int, after: int) -> Iterator[tuple[U8, U8, U8]]:
    for s in range(0, len(frames), size):
        e = min(len(frames), s + size)
        b = frames[max(0, s - before):s]
        a = frames[e:e + after]
        empty = np.empty((0, *frames[0].shape), np.uint8)
        yield (np.stack(frames[s:e]), np.stack(b) if b else empty, np.stack(a) if a else empty)


def run_pipeline(matter: Matter, frames: list[U8], plate: U8) -> tuple[list[F32], list[U8]]:
    """Matter + composite on shards with context, exactly as the pipeline calls them."""
    alphas: list[F32] = []
    comps: list[U8] = []
    for fr, be, af in shards(frames, SHARD, matter.context_before, matter.context_after):
        a, fg = matter(fr, be, af)
        out = composite(fg, a, plate)
        alphas.extend(a)
        comps.extend(out)
    return alphas, comps


def load_cremad(path: Path, bg: str, limit: int | None) -> Clip:
    import decord

    vr = decord.VideoReader(str(path))
    n = len(vr) if limit is None else min(limit, len(vr))
    raw = vr.get_batch(list(range(n))).asnumpy()
    h, w = raw.shape[1:3]
    keyed: list[Keyed] = [key_frame(f) for f in raw]
    frames = [composite_keyed(k, b) for k, b in zip(keyed, pan_background(bg, n, h, w), strict=True)]
    return Clip(f"{path.stem.split('_')[-2]}/{bg}", frames, [k.alpha for k in keyed], [k.fg for k in keyed])


def load_cremad_green(path: Path, limit: int | None) -> Clip:
    """The raw green-screen frames themselves: the hardest case for spill (scored like the others)."""
    import decord

    vr = decord.VideoReader(str(path))
    n = len(vr) if limit is None else min(limit, len(vr))
    raw = vr.get_batch(list(range(n))).asnumpy()
    keyed = [key_frame(f) for f in raw]
    name = f"{path.stem.split('_')[-2]}/green"
    return Clip(name, list(raw), [k.alpha for k in keyed], [k.fg for k in keyed])


def load_davis(limit: int | None) -> Clip:
    imgs = sorted((DAVIS / "images").glob("*.jpg"))
    if limit is not None:
        imgs = imgs[:limit]
    frames, alphas, boxes = [], [], []
    for p in imgs:
        frames.append(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
        m = cv2.imread(str(DAVIS / "masks" / (p.stem + ".png")), cv2.IMREAD_GRAYSCALE)
        a = (m > 127).astype(np.float32)
        ys, xs = np.nonzero(a)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        dy, dx = (y1 - y0) * 0.125, (x1 - x0) * 0.125  # enlarged by 25% (12.5% each side)
        h, w = a.shape
        boxes.append((max(0, int(y0 - dy)), min(h, int(y1 + dy)), max(0, int(x0 - dx)), min(w, int(x1 + dx))))
        alphas.append(a)
    return Clip("DAVIS dance-twirl", frames, alphas, None, boxes)


def score(clip: Clip, alphas: list[F32], comps: list[U8] | None, plate: U8 | None) -> dict[str, float]:
    mads, mses, ious, bfs, dts, errs = [], [], [], [], [], []
    for t, (p, g) in enumerate(zip(alphas, clip.alpha, strict=True)):
        if clip.box is not None:
            y0, y1, x0, x1 = clip.box[t]
            crop: Callable[[F32], F32] = lambda a, y0=y0, y1=y1, x0=x0, x1=x1: a[y0:y1, x0:x1]  # noqa: E731
        else:
            crop = lambda a: a  # noqa: E731
        pc, gc = crop(p), crop(g)
        mads.append(M.mad(pc, gc))
        mses.append(M.mse(pc, gc))
        ious.append(M.iou(pc, gc))
        bfs.append(M.boundary_f(pc, gc))
        if t > 0:
            dts.append(M.dtssd(pc, crop(alphas[t - 1]), gc, crop(clip.alpha[t - 1])))
        if comps is not None and plate is not None and clip.gt_fg is not None:
            band = ((g > 0) & (g < 1)).astype(np.uint8)
            band = cv2.dilate(band, np.ones((7, 7), np.uint8)) > 0
            truth = composite_keyed(Keyed(g, clip.gt_fg[t]), plate)
            errs.append(float(np.abs(comps[t][band].astype(np.float32) - truth[band]).mean()))
    out = {"MAD": float(np.mean(mads)), "MSE": float(np.mean(mses)), "IoU": float(np.mean(ious)),
           "IoU worst": float(np.min(ious)), "BF": float(np.mean(bfs)),
           "dtSSD": float(np.mean(dts)) if dts else float("nan")}
    if errs:
        out["edge RGB err"] = float(np.mean(errs))
    return out


COLS = ("MAD", "MSE", "IoU", "IoU worst", "BF", "dtSSD", "edge RGB err")


def fmt_row(name: str, s: dict[str, float]) -> str:
    cells = []
    for c in COLS:
        v = s.get(c)
        cells.append("" if v is None else (f"{v:.3f}" if c.startswith(("IoU", "BF")) else f"{v:.2f}"))
    return f"| {name} | " + " | ".join(cells) + " |"


def header(title: str) -> str:
    return f"\n**{title}**\n\n| config | " + " | ".join(COLS) + " |\n|---|" + "---|" * len(COLS)


class Timed:
    """A model wrapper that adds up the time spent in predict (to split model from refinement)."""

    def __init__(self, m: SegmentationModel) -> None:
        self.m, self.name, self.input_size, self.spent = m, m.name, m.input_size, 0.0

    def predict(self, x: U8) -> F32:
        t0 = time.perf_counter()
        r = self.m.predict(x)
        self.spent += time.perf_counter() - t0
        return r


def x264_ms(frames: list[U8]) -> float:
    """A plain x264 veryfast crf 18 encode of the frames (in memory), ms per frame: the yardstick."""
    import io

    import av

    best = float("inf")
    for _ in range(2):
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            st = out.add_stream("libx264", rate=25)
            st.width, st.height, st.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            st.options = {"preset": "veryfast", "crf": "18"}
            t0 = time.perf_counter()
            for f in frames:
                for p in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(p)
            for p in st.encode():
                out.mux(p)
            best = min(best, time.perf_counter() - t0)
    return best / len(frames) * 1e3


def timing_1080p(model: SegmentationModel, partner: SegmentationModel, clip: Clip, n: int = 48,
                 repeats: int = 3) -> list[str]:
    """Milliseconds per 1080p frame, best of ``repeats`` (the machine is shared): refinement (Matter minus
    model time), model, composite, per config, on ``n`` frames upscaled to 1920x1080, shards of 32 (the
    pipeline's default) with their context frames."""
    frames = [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_LINEAR) for f in clip.frames[:n]]
    plate = np.full((1080, 1920, 3), PLATE_RGB, np.uint8)
    lines = []
    for name, cfg in configs().items():
        tm, tp = Timed(model), Timed(partner)
        matter = Matter(tm, cfg, partner=tp)
        best = (float("inf"), 0.0, 0.0)
        for _ in range(repeats):
            tm.spent = tp.spent = 0.0
            alphas: list[F32] = []
            fgs: list[U8] = []
            t0 = time.perf_counter()
            for fr, be, af in shards(frames, 32, matter.context_before, matter.context_after):
                a, fg = matter(fr, be, af)
                alphas.extend(a)
                fgs.extend(fg)
            total = time.perf_counter() - t0
            t1 = time.perf_counter()
            for f, a in zip(fgs, alphas, strict=True):
                composite(f[None], a[None], plate)
            comp = time.perf_counter() - t1
            if total < best[0]:
                best = (total, tm.spent + tp.spent, comp)
        total, model_s, comp = (v / len(frames) * 1e3 for v in best)
        lines.append(f"| {name} | {total - model_s:.1f} | {model_s:.1f} | {comp:.1f} | {total + comp:.1f} |")
    return lines


def no_person_rows(model: SegmentationModel, n: int) -> list[str]:
    """Person-free pans: share of pixels the matte gives any alpha (should be 0), raw vs full."""
    rows = []
    for bg in (*PHOTOS, "synthetic"):
        frames = list(pan_background(bg, n, 360, 480))
        plate = np.zeros((360, 480, 3), np.uint8)
        cells = []
        for cfg in (MatteConfig.raw(), MatteConfig()):
            alphas, _ = run_pipeline(Matter(model, cfg), frames, plate)
            share = float(np.mean([np.count_nonzero(a > 0.5) / a.size for a in alphas]))
            cells.append(f"{100 * share:.1f} %")
        rows.append(f"| {bg} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=None, help="frames per clip (default: all)")
    ap.add_argument("--clips", type=int, default=6, help="how many CREMA-D clips")
    ap.add_argument("--only", default="", help="comma-separated config names to run (default: all)")
    ap.add_argument("--no-davis", action="store_true")
    ap.add_argument("--no-green", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--pngs", type=Path, default=None, help="write alpha/composite PNGs of frame 20 here")
    args = ap.parse_args()

    model = get_model("selfie", "cpu")
    cfgs = configs()
    if args.only:
        cfgs = {k: v for k, v in cfgs.items() if k in args.only.split(",")}
    clips: list[Clip] = []
    bgs = (*PHOTOS, "synthetic")
    for i, p in enumerate(CREMAD[: args.clips]):
        clips.append(load_cremad(p, bgs[i % len(bgs)], args.frames))
    if not args.no_green:
        clips.append(load_cremad_green(CREMAD[0], args.frames))
    if not args.no_davis:
        clips.append(load_davis(args.frames))

    summary: dict[str, dict[str, list[float]]] = {k: {} for k in cfgs}
    for clip in clips:
        h, w = clip.frames[0].shape[:2]
        plate = np.full((h, w, 3), PLATE_RGB, np.uint8)
        print(header(f"{clip.name} ({len(clip.frames)} frames, {w}x{h})"), flush=True)
        for name, cfg in cfgs.items():
            alphas, comps = run_pipeline(Matter(model, cfg), clip.frames, plate)
            s = score(clip, alphas, comps, plate)
            print(fmt_row(name, s), flush=True)
            group = "davis" if clip.box is not None else ("green" if clip.name.endswith("green") else "keyed")
            for k, v in s.items():
                summary[name].setdefault(f"{group}:{k}", []).append(v)
            if args.pngs is not None:
                args.pngs.mkdir(parents=True, exist_ok=True)
                t = min(20, len(alphas) - 1)
                tag = f"{clip.name.replace('/', '_').replace(' ', '_')}_{name.replace(' ', '').strip('-()')}"
                cv2.imwrite(str(args.pngs / f"{tag}_alpha.png"), (alphas[t] * 255).astype(np.uint8))
                cv2.imwrite(str(args.pngs / f"{tag}_comp.png"), comps[t][:, :, ::-1])
                if name == "full":
                    cv2.imwrite(str(args.pngs / f"{clip.name.replace('/', '_').replace(' ', '_')}_gt.png"),
                                (clip.alpha[t] * 255).astype(np.uint8))

    print(header("mean over the keyed green-screen composites"))
    for name in cfgs:
        s = {k.split(":", 1)[1]: float(np.mean(v))
             for k, v in summary[name].items() if k.startswith("keyed:")}
        if s:
            s["IoU worst"] = float(np.min(summary[name]["keyed:IoU worst"]))
            print(fmt_row(name, s))

    print("\n**frames without a person: share of pixels with alpha > 0.5**\n\n"
          "| background | raw | full |\n|---|---|---|")
    for line in no_person_rows(model, 8 if args.frames is None else min(8, args.frames)):
        print(line, flush=True)

    if not args.no_timing:
        partner = get_model("selfie_landscape", "cpu")
        for clip in (c for c in clips if c.name.startswith(("ANG/", "DAVIS"))):
            print(f"\n**ms per 1080p frame (2 cores shared), {clip.name} upscaled to 1920x1080**\n\n"
                  "| config | refinement | model | composite | total |\n|---|---|---|---|---|")
            for line in timing_1080p(model, partner, clip):
                print(line, flush=True)
        frames = [cv2.resize(f, (1920, 1080)) for f in clips[0].frames[:48]]
        print(f"\nx264 veryfast crf 18 encode of the same 1080p frames: {x264_ms(frames):.1f} ms per frame")


if __name__ == "__main__":
    main()
