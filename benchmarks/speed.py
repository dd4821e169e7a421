"""Speed of a whole job against a plain ffmpeg re-encode of the same clip (issue 12's table).

    .venv/bin/python -m benchmarks.speed [--repeat 3] [--what local,cli,ray] [--clips talking,laptop,juggler]

The clips are made once from ``../shared/data`` into ``.cache/bench/`` (20 s each):
``laptop`` = landscape_1080p_person_laptop looped (1080p, a partly visible subject: the crop pass runs),
``talking`` = upper_body_dark_bg_gesture upscaled to 1920x1080 and looped (a talking head),
``juggler`` = fullbody_juggle looped (720p full body).

For each clip, runs alternate (baseline, then each target, ``--repeat`` times) and the table shows
medians: the baseline is ``ffmpeg -i IN -c:v libx264 -preset veryfast -crf 18 -c:a copy OUT`` as its own
process; the targets are

- ``local``: the one-process engine called in this process (model loaded once, outside the timing), with
  the seconds each stage spent (decode, process = the shard workers, encode, finalize = audio mux);
- ``cli``: ``bgservice process IN -o OUT --background '#1E90FF'`` as a new process (its default engine:
  in-process unless ``RAY_ADDRESS`` is set), model loading and interpreter start included;
- ``ray``: ``bgservice process --engine ray`` against a Ray started beforehand (``ray start --head``; the
  benchmark starts and stops it), the warm case a cluster user sees; its CPU seconds are not comparable
  (Ray's processes are not its children) and are left out.

Columns: wall seconds, ratio to the baseline's wall, CPU seconds (user + system of the process and its
children), cores busy (CPU / wall). Nothing is asserted: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bgservice.engines.local import StageTimes, run_job
from bgservice.media.ffmpeg import loop_clip, plain_reencode_args
from bgservice.media.probe import probe
from bgservice.settings import get_settings
from bgservice.spec import JobSpec
from bgservice.stages import ShardProcessor

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "videos"
CACHE = REPO / ".cache" / "bench"
SECONDS = 20.0
CLIPS: dict[str, tuple[str, tuple[int, int] | None]] = {
    "talking": ("upper_body_dark_bg_gesture_mediapipe_1280x720.mp4", (1920, 1080)),
    "laptop": ("landscape_1080p_person_laptop_mediapipe.mp4", None),
    "juggler": ("fullbody_juggle_sam2_1280x720.mp4", None),
}
BLUE = "#1E90FF"


def make_clip(name: str) -> Path:
    source, size = CLIPS[name]
    out = CACHE / f"{name}_{int(SECONDS)}s.mp4"
    if not out.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial.mp4")
        w, h = size if size else (None, None)
        has_audio = probe(str(DATA / source), get_settings()).audio is not None
        loop_clip(str(DATA / source), str(partial), seconds=SECONDS, width=w, height=h, audio=has_audio)
        partial.replace(out)
    return out


def _cpu_self_children() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children) of one call."""
    c0, t0 = _cpu_self_children(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, _cpu_self_children() - c0


def run_process(args: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed: {done.stderr.strip()[-500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--what", default="local,cli", help="comma-separated: local, cli, ray")
    parser.add_argument("--clips", default="talking,laptop,juggler")
    args = parser.parse_args()
    targets = [t.strip() for t in args.what.split(",") if t.strip()]
    settings = get_settings()
    processor = ShardProcessor(settings) if "local" in targets else None
    env_local = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    ray_env: dict[str, str] | None = None
    if "ray" in targets:
        started = subprocess.run(
            [
                sys.executable,
                "-m",
                "ray.scripts.scripts",
                "start",
                "--head",
                "--num-cpus",
                str(os.cpu_count()),
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode != 0:
            raise SystemExit(f"cannot start Ray: {started.stderr[-500:]}")
        ray_env = {**os.environ, "RAY_ADDRESS": "auto"}
    print(
        f"machine: {os.cpu_count()} cores; preset={settings.preset} crf={settings.crf}; "
        f"medians of {args.repeat}"
    )
    header = (
        f"{'clip':8} {'frames':>6} {'size':>9} {'what':>8} {'wall s':>7} {'ratio':>6} {'CPU s':>7} "
        f"{'cores':>5}"
    )
    print(header)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in [c.strip() for c in args.clips.split(",") if c.strip()]:
                clip = make_clip(name)
                info = probe(str(clip), settings)
                size = f"{info.out_width}x{info.out_height}"
                base_args = plain_reencode_args(
                    str(clip), f"{tmp}/base.mp4", crf=settings.crf, preset=settings.preset
                )
                cli = [
                    sys.executable,
                    "-m",
                    "bgservice",
                    "process",
                    str(clip),
                    "-o",
                    f"{tmp}/cli.mp4",
                    "--background",
                    BLUE,
                ]
                spec = JobSpec.build(str(clip), f"{tmp}/local.mp4", colour=BLUE)
                runs: dict[str, list[tuple[float, float]]] = {"ffmpeg": []}
                stages: list[StageTimes] = []
                if "ray" in targets:  # warm the Segmenter pool once: actor start-up is not per-job cost
                    run_process([*cli[:-2], "--engine", "ray"], ray_env)
                for _ in range(args.repeat):
                    runs["ffmpeg"].append(measure(partial(run_process, base_args)))
                    for target in targets:
                        if target == "local":
                            assert processor is not None
                            st = StageTimes()
                            stages.append(st)
                            runs.setdefault(target, []).append(
                                measure(partial(run_job, spec, settings, processor=processor, timings=st))
                            )
                        elif target == "cli":
                            runs.setdefault(target, []).append(measure(partial(run_process, cli, env_local)))
                        elif target == "ray":
                            ray_cli = [*cli, "--engine", "ray"]
                            runs.setdefault(target, []).append(
                                measure(partial(run_process, ray_cli, ray_env))
                            )
                base_wall = statistics.median(w for w, _ in runs["ffmpeg"])
                for what, values in runs.items():
                    wall = statistics.median(w for w, _ in values)
                    cpu = statistics.median(c for _, c in values)
                    cpu_text = "" if what == "ray" else f"{cpu:7.1f}"
                    cores = "" if what == "ray" else f"{cpu / wall:5.2f}"
                    print(
                        f"{name:8} {info.frame_count:6d} {size:>9} {what:>8} {wall:7.2f} "
                        f"{wall / base_wall:6.2f} {cpu_text:>7} {cores:>5}"
                    )
                if stages:
                    keys = sorted({k for st in stages for k in st})
                    parts = ", ".join(
                        f"{k} {statistics.median(st.get(k, 0.0) for st in stages):.1f}s" for k in keys
                    )
                    print(f"{'':8} local stages (seconds in each stage's threads, overlapping): {parts}")
    finally:
        if ray_env is not None:
            subprocess.run(
                [sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"],
                capture_output=True,
                check=False,
            )


if __name__ == "__main__":
    main()
