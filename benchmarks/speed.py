"""Speed of a whole job against a plain ffmpeg re-encode of the same clip (issue 12's table).

    .venv/bin/python -m benchmarks.speed [--repeat 3] [--what local,cli,ray,service]
                                         [--clips talking,laptop,juggler]

The clips are made once from ``../shared/data`` into ``.cache/bench/``:
``laptop`` = landscape_1080p_person_laptop looped to 20 s (1080p, a partly visible subject: the crop pass
runs), ``talking`` = upper_body_dark_bg_gesture upscaled to 1920x1080 and looped to 20 s (a talking head),
``juggler`` = fullbody_juggle looped to 20 s (720p full body); ``short`` is the CREMA-D talking head
``talking_head_cremad_1001_DFA_NEU_XX.flv`` as it is (2.0 s, 480x360, FLV with MP3 audio: the README's
quickstart clip; the service part's clip, and a table row when named in ``--clips``).

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
children), cores busy (CPU / wall).

``service`` (after the table) is issue 12's fixed-overhead figure: the ``short`` clip through a running
service against the same job in-process. ``bgservice serve`` is started once (a real process on
127.0.0.1, a free port, a private ``BGSERVICE_DATA_DIR`` in a temp dir, its dev key read from
``<data dir>/dev-api-key``), waited for until ``/readyz`` answers, and stopped at the end (SIGTERM, then
whatever is left of its process group). Both paths run one warm-up job first (the service's Segmenter
pool, this process's model load), then alternate ``--repeat`` times, each round once the service's
processes are quiet again (under 0.3 cores over a second; an idle service uses about 0.1):

- over HTTP with :class:`bgservice.client.Client`: upload the clip as an asset, submit it with
  ``back_ground`` #1E90FF, poll ``GET /v2/jobs/{id}`` every 0.1 s until it ends, download the result;
- in-process: ``LocalEngine.run`` on the same clip and colour (the CLI's default path; its model loaded
  once, outside the timing, as a running service's is).

It prints both medians, the service's own created-to-completed time (from the job record) and the
difference of the medians against the target (at most 2 s more than in-process: met / not met).
Nothing is asserted: a measurement, not a test.
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

from benchmarks.serve_process import ServeProcess
from bgservice.client import Client
from bgservice.engines.local import LocalEngine, StageTimes, run_job
from bgservice.media.ffmpeg import loop_clip, plain_reencode_args
from bgservice.media.probe import probe
from bgservice.settings import Settings, get_settings
from bgservice.spec import JobSpec
from bgservice.stages import ShardProcessor

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "videos"
CACHE = REPO / ".cache" / "bench"
# name: (source under DATA, scaled to (w, h) or None, looped to seconds or None: the source as it is)
CLIPS: dict[str, tuple[str, tuple[int, int] | None, float | None]] = {
    "talking": ("upper_body_dark_bg_gesture_mediapipe_1280x720.mp4", (1920, 1080), 20.0),
    "laptop": ("landscape_1080p_person_laptop_mediapipe.mp4", None, 20.0),
    "juggler": ("fullbody_juggle_sam2_1280x720.mp4", None, 20.0),
    "short": ("talking_head_cremad_1001_DFA_NEU_XX.flv", None, None),  # 2.0 s, the README's quickstart clip
}
SERVICE_CLIP = "short"
OVERHEAD_TARGET_S = 2.0  # issue 12: a 2 s clip through a running service <= 2 s more than in-process
POLL_S = 0.1  # the service part's GET /v2/jobs/{id} interval: at most this late in seeing the job end
BLUE = "#1E90FF"


def make_clip(name: str) -> Path:
    source, size, seconds = CLIPS[name]
    if seconds is None:
        return DATA / source
    out = CACHE / f"{name}_{int(seconds)}s.mp4"
    if not out.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial.mp4")
        w, h = size if size else (None, None)
        has_audio = probe(str(DATA / source), get_settings()).audio is not None
        loop_clip(str(DATA / source), str(partial), seconds=seconds, width=w, height=h, audio=has_audio)
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


def settle(
    service: ServeProcess, quiet_cores: float = 0.3, window: float = 1.0, timeout: float = 90
) -> float:
    """Wait (with a deadline) until the service's processes use under ``quiet_cores`` over ``window``
    seconds (what the previous job set going, e.g. a Segmenter actor still starting, has finished), so
    that the in-process run does not share the cores with it: the cores it used in the last window."""
    deadline = time.monotonic() + timeout
    while True:
        c0, t0 = service.cpu_seconds(), time.monotonic()
        time.sleep(window)
        c1 = service.cpu_seconds()  # a process that ended in the window is left out, a new one counted whole
        busy = sum(c - c0.get(pid, 0.0) for pid, c in c1.items()) / (time.monotonic() - t0)
        if busy < quiet_cores or time.monotonic() > deadline:
            return busy


def service_overhead(repeat: int, settings: Settings, processor: ShardProcessor) -> None:
    """Issue 12's fixed overhead: the short clip through a running ``bgservice serve`` vs in-process."""
    clip = make_clip(SERVICE_CLIP)
    info = probe(str(clip), settings)
    engine = LocalEngine(processor)  # what `bgservice process` runs by default, with its model loaded
    with tempfile.TemporaryDirectory(prefix="bgservice-speed-") as tmp:
        service = ServeProcess(Path(tmp) / "data")
        spec = JobSpec.build(str(clip), f"{tmp}/in_process.mp4", colour=BLUE)
        in_service: list[float] = []  # the job record's created -> completed, seconds

        def in_process() -> None:
            engine.run(spec, settings)

        def over_http(client: Client) -> None:
            asset = client.upload(clip)
            accepted = client.submit(asset.asset_id, background=BLUE)
            job = client.wait(accepted.id, poll_interval=POLL_S, max_poll_interval=POLL_S, timeout=600)
            client.download(job, f"{tmp}/service.mp4")
            in_service.append((job.updated_at - job.created_at).total_seconds())

        load = os.getloadavg()[0]
        try:
            t0 = time.perf_counter()
            service.start()
            started = time.perf_counter() - t0
            with Client(service.base, service.dev_key()) as client:
                t0 = time.perf_counter()
                over_http(client)  # warm-up: the first job brings up the Segmenter pool's actors
                warm_service = time.perf_counter() - t0
                in_service.clear()
                in_process()  # warm-up: ONNX Runtime's first runs
                walls: dict[str, list[float]] = {"in-process": [], "service": []}
                idle_cores: list[float] = []
                for _ in range(repeat):
                    idle_cores.append(settle(service))
                    walls["in-process"].append(measure(in_process)[0])
                    walls["service"].append(measure(partial(over_http, client))[0])
        finally:
            code = service.stop()
        frames = {
            what: probe(f"{tmp}/{name}.mp4", settings).frame_count
            for what, name in (("in-process", "in_process"), ("service", "service"))
        }
    local_s = statistics.median(walls["in-process"])
    service_s = statistics.median(walls["service"])
    diff = service_s - local_s
    print(
        f"\nservice overhead: {CLIPS[SERVICE_CLIP][0]} ({info.duration:.2f} s, "
        f"{info.frame_count} frames, {info.out_width}x{info.out_height}), background {BLUE}; "
        f"medians of {repeat} alternating runs after one warm-up job each; load average {load:.1f} "
        f"-> {os.getloadavg()[0]:.1f}"
    )
    print(
        f"  service started in {started:.1f} s (to /readyz and its banner), first job {warm_service:.1f} s; "
        f"its processes used {statistics.median(idle_cores):.2f} cores before each round; "
        f"stopped with exit {code}"
    )
    service_what = f"service (upload, submit, poll every {POLL_S:.1f} s, download)"
    print(f"  {'in-process (LocalEngine.run, model loaded)':58} {local_s:6.2f} s")
    print(
        f"  {service_what:58} {service_s:6.2f} s"
        f"   (created -> completed in the job record: {statistics.median(in_service):.2f} s)"
    )
    verdict = "met" if diff <= OVERHEAD_TARGET_S else "NOT met"
    print(f"  {'difference':58} {diff:6.2f} s   target <= {OVERHEAD_TARGET_S:.1f} s: {verdict}")
    if frames["service"] != frames["in-process"]:
        print(f"  warning: not the same output: frames {frames}")


WHAT = ("local", "cli", "ray", "service")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--what", default="local,cli,service", help=f"comma-separated: {', '.join(WHAT)}")
    parser.add_argument("--clips", default="talking,laptop,juggler", help=f"of: {', '.join(CLIPS)}")
    args = parser.parse_args()
    targets = [t.strip() for t in args.what.split(",") if t.strip()]
    clips = [c.strip() for c in args.clips.split(",") if c.strip()]
    for bad, known, flag in (
        ([t for t in targets if t not in WHAT], WHAT, "--what"),
        ([c for c in clips if c not in CLIPS], tuple(CLIPS), "--clips"),
    ):
        if bad:
            parser.error(f"{flag}: unknown {', '.join(bad)} (known: {', '.join(known)})")
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    settings = get_settings()
    needs_model = "local" in targets or "service" in targets
    processor = ShardProcessor(settings) if needs_model else None
    print(
        f"machine: {os.cpu_count()} cores; preset={settings.preset} crf={settings.crf}; "
        f"medians of {args.repeat}"
    )
    table_targets = [t for t in targets if t != "service"]
    if table_targets:
        clip_table(clips, table_targets, args.repeat, settings, processor)
    if "service" in targets:
        assert processor is not None
        service_overhead(args.repeat, settings, processor)


def clip_table(
    clips: list[str],
    targets: list[str],
    repeat: int,
    settings: Settings,
    processor: ShardProcessor | None,
) -> None:
    """The table: each clip's plain re-encode against each target, alternating, medians."""
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
    header = (
        f"{'clip':8} {'frames':>6} {'size':>9} {'what':>8} {'wall s':>7} {'ratio':>6} {'CPU s':>7} "
        f"{'cores':>5}"
    )
    print(header)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in clips:
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
                for _ in range(repeat):
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
