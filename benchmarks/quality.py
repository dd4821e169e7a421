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
import os
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
        "- pose crop model": replace(full, crop_model=""),  # the crop pass on the main model (+ mirror)
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


def x264_ms(frames: list[U8], threads: int) -> tuple[float, float]:
    """A plain x264 veryfast crf 18 encode of the frames (in memory): (wall, CPU) ms per frame."""
    import io

    import av

    best = (float("inf"), float("inf"))
    for _ in range(2):
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            st = out.add_stream("libx264", rate=25)
            st.width, st.height, st.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            st.options = {"preset": "veryfast", "crf": "18", "threads": str(threads)}
            t0, c0 = time.perf_counter(), time.process_time()
            for f in frames:
                for p in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(p)
            for p in st.encode():
                out.mux(p)
            best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best[0] / len(frames) * 1e3, best[1] / len(frames) * 1e3


class Replay:
    """Replays recorded model outputs: times the refinement without the model (and its thread pool)."""

    def __init__(self, m: SegmentationModel) -> None:
        self.m, self.name, self.input_size = m, m.name, m.input_size
        self.recorded: list[F32] = []
        self.replaying = False
        self.pos = 0
        self.spent = 0.0  # wall time inside the real model while recording

    def predict(self, x: U8) -> F32:
        if self.replaying:  # a copy: Matter works on the model's output in place
            self.pos += 1
            return self.recorded[self.pos - 1].copy()
        t0 = time.perf_counter()
        out = self.m.predict(x)
        self.spent += time.perf_counter() - t0
        self.recorded.append(out.copy())
        return out


def timing_1080p(model: SegmentationModel, partner: SegmentationModel, clip: Clip, n: int = 48,
                 repeats: int = 3, crop_model: SegmentationModel | None = None) -> list[str]:
    """ms per 1080p frame on ``n`` frames upscaled to 1920x1080, shards of 32 (the pipeline's default)
    with their context frames, best of ``repeats``.

    The machine is shared, so wall time swings with the other jobs. The figures that hold still are CPU
    times on one thread (cv2.setNumThreads(1)): the refinement is timed with the models' outputs replayed
    (no model, no ONNX Runtime threads), and the composite alike. The model's wall time (its own threads)
    is given for scale (inside predict during the recording run). Everything runs with cv2 on one thread
    so that the recording and the replays make the same model calls.
    """
    frames = [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_LINEAR) for f in clip.frames[:n]]
    plate = np.full((1080, 1920, 3), PLATE_RGB, np.uint8)
    crop_model = crop_model or get_model(MatteConfig().crop_model or model.name, "cpu")
    lines = []
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for name, cfg in configs().items():
            tm, tp, tc = Replay(model), Replay(partner), Replay(crop_model)
            matter = Matter(tm, cfg, partner=tp, crop_model=tc if cfg.crop_model else None)
            alphas: list[F32] = []
            fgs: list[U8] = []
            for fr, be, af in shards(frames, 32, matter.context_before, matter.context_after):
                a, fg = matter(fr, be, af)
                alphas.extend(a)
                fgs.extend(fg)
            tm.replaying = tp.replaying = tc.replaying = True
            best_r, best_c = float("inf"), float("inf")
            for _ in range(repeats):
                tm.pos = tp.pos = tc.pos = 0
                c0 = time.process_time()
                for fr, be, af in shards(frames, 32, matter.context_before, matter.context_after):
                    matter(fr, be, af)
                best_r = min(best_r, time.process_time() - c0)
                c1 = time.process_time()
                for f, a in zip(fgs, alphas, strict=True):
                    composite(f[None], a[None], plate)
                best_c = min(best_c, time.process_time() - c1)
            k = 1e3 / len(frames)
            model_ms = (tm.spent + tp.spent + tc.spent) * k
            lines.append(f"| {name} | {best_r * k:.1f} | {best_c * k:.1f} | {model_ms:.1f} |")
    finally:
        cv2.setNumThreads(threads)
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
    ap.add_argument("--timing-only", action="store_true", help="only the 1080p timing (ANG clip + DAVIS)")
    ap.add_argument("--pngs", type=Path, default=None, help="write alpha/composite PNGs of frame 20 here")
    args = ap.parse_args()

    model = get_model("selfie", "cpu")
    if args.timing_only:
        timing(model, [load_cremad(CREMAD[0], PHOTOS[0], 48), load_davis(48)])
        return
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
        timing(model, clips)


def timing(model: SegmentationModel, clips: list[Clip]) -> None:
    partner = get_model("selfie_landscape", "cpu")
    print(f"\n**ms per 1080p frame** (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at "
          "the start): refinement and composite = CPU time on one thread, model = wall time")
    for clip in (c for c in clips if c.name.startswith(("ANG/", "DAVIS"))):
        print(f"\n{clip.name} upscaled to 1920x1080\n\n"
              "| config | refinement (CPU, 1 thread) | composite (CPU, 1 thread) | model (wall) |\n"
              "|---|---|---|---|")
        for line in timing_1080p(model, partner, clip):
            print(line, flush=True)
    frames = [cv2.resize(f, (1920, 1080)) for f in clips[0].frames[:48]]
    wall1, cpu1 = x264_ms(frames, 1)
    wall2, _ = x264_ms(frames, 2)
    print(f"\nx264 veryfast crf 18 encode of the same 1080p frames: {cpu1:.1f} ms CPU per frame on one "
          f"thread ({wall1:.1f} ms wall); {wall2:.1f} ms wall with 2 threads")


if __name__ == "__main__":
    main()
