"""Speed of a whole job against a plain ffmpeg re-encode of the same clip, run in this process.

    .venv/bin/python -m benchmarks.speed [CLIP ...] [--engine local|ray|both] [--repeat N]

For each clip it times (best of N, wall clock): the baseline (ffmpeg decode + x264 at the job's
preset/CRF + AAC, through bgservice.media.ffmpeg.plain_reencode), and the job through the chosen engines
(trim none, white background). It prints seconds, ms per frame and the ratio job / baseline; the target
is a ratio of 2 or less. Nothing is asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bgservice.engines.local import run_job
from bgservice.media.ffmpeg import plain_reencode
from bgservice.media.probe import probe
from bgservice.settings import get_settings
from bgservice.spec import JobSpec
from bgservice.stages import ShardProcessor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
DEFAULT_CLIPS = [
    DATA / "fullbody_juggle_sam2_1280x720.mp4",
    DATA / "landscape_1080p_person_laptop_mediapipe.mp4",
]


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("clips", nargs="*", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--engine", choices=["local", "ray", "both"], default="local")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    settings = get_settings()
    processor = ShardProcessor(settings)  # model loaded once, outside the timings
    engines = ["local", "ray"] if args.engine == "both" else [args.engine]
    print(f"preset={settings.preset} crf={settings.crf}")
    print(f"{'clip':48} {'frames':>6} {'size':>10} {'what':>10} {'s':>7} {'ms/frame':>9} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for clip in args.clips:
            info = probe(str(clip), settings)
            n = info.frame_count
            size = f"{info.out_width}x{info.out_height}"
            reencode = partial(
                plain_reencode, str(clip), f"{tmp}/base.mp4", crf=settings.crf, preset=settings.preset
            )
            base = best_of(args.repeat, reencode)
            row = f"{clip.name[:48]:48} {n:6d} {size:>10}"
            print(f"{row} {'ffmpeg':>10} {base:7.2f} {base / n * 1e3:9.1f} {1:6.2f}")
            for engine in engines:
                spec = JobSpec(input_url=str(clip), output_url=f"{tmp}/{engine}.mp4")
                if engine == "local":
                    took = best_of(args.repeat, partial(run_job, spec, settings, processor=processor))
                else:
                    from bgservice.engines.ray.dag import run_job_ray

                    run_job_ray(spec, settings)  # warm the pool: actor start-up is not per-job cost
                    took = best_of(args.repeat, partial(run_job_ray, spec, settings))
                print(f"{row} {engine:>10} {took:7.2f} {took / n * 1e3:9.1f} {took / base:6.2f}")


if __name__ == "__main__":
    main()
