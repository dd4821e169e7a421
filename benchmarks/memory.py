"""Memory stays flat in the video's length on the Ray DAG (a measurement, not a test).

    python -m benchmarks.memory [--short 30] [--long 300] [--size 1280x720] [--workdir DIR]

Generates two clips of the same kind (720p by default: 30 s and 5 min) with real ffmpeg, starts a local
Ray (``--cpus``, default 2), warms the Segmenter pool and a decoder/encoder pair, then runs each clip
through :func:`bgservice.engines.ray.dag.run_job_ray` while sampling every ``--interval`` seconds:

- the sum of PSS (proportional set size, ``/proc/PID/smaps_rollup``) over every process of this Ray
  session: this driver and all its descendants (GCS, raylet, dashboard agents, every worker);
- the object store's use (``Plasma memory usage`` of Ray's memory summary).

It prints peak and mean of their sum for each clip and the ratio long/short of the peaks (target <= 1.2).
The object store lives in shared memory that the raylet and workers map, so part of it may be counted in
both terms: the figure is conservative. Only this session's processes are counted (other Ray sessions
on the machine are not).
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: the ppid follows the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def session_pids(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children = _children_map()
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def pss_bytes(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else 0


def object_store_bytes(gcs_address: str) -> int:
    from ray._private.internal_api import memory_summary

    text = memory_summary(address=gcs_address, stats_only=True)  # type: ignore[no-untyped-call]
    m = re.search(r"Plasma memory usage (\d+) MiB", text)
    return int(m.group(1)) * 1024**2 if m else 0


def role(pid: int) -> str:
    """The Ray actor class of a process (``ray::Segmenter.process`` -> ``Segmenter``), else ``other``."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return "other"
    if cmd.startswith("ray::"):
        return cmd[5:].split(".")[0].strip() or "other"
    return "other"


@dataclass
class Samples:
    pss: list[int] = field(default_factory=list)
    store: list[int] = field(default_factory=list)
    by_role: dict[str, int] = field(default_factory=dict)  # peak PSS of each role
    without_decoder: list[int] = field(default_factory=list)  # PSS minus the decoder process

    @property
    def totals(self) -> list[int]:
        return [a + b for a, b in zip(self.pss, self.store, strict=True)]


def sample_while(run: threading.Thread, gcs_address: str, interval: float) -> Samples:
    samples = Samples()
    me = os.getpid()
    while run.is_alive():
        roles: dict[str, int] = {}
        for p in session_pids(me):
            r = role(p)
            roles[r] = roles.get(r, 0) + pss_bytes(p)
        for r, v in roles.items():
            samples.by_role[r] = max(samples.by_role.get(r, 0), v)
        samples.pss.append(sum(roles.values()))
        samples.without_decoder.append(samples.pss[-1] - roles.get("Decoder", 0))
        samples.store.append(object_store_bytes(gcs_address))
        run.join(interval)
    return samples


def make_clip(path: Path, seconds: float, width: int, height: int) -> str:
    from bgservice.media.ffmpeg import ClipSpec, synth_clip

    if not path.exists():
        spec = ClipSpec(
            width=width, height=height, duration=seconds, rate="25", video_opts={"preset": "veryfast"}
        )
        tmp = path.with_name(f".{path.name}.partial{path.suffix}")
        synth_clip(str(tmp), spec)
        tmp.replace(path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", type=float, default=30.0, help="seconds of the short clip")
    parser.add_argument("--long", type=float, default=300.0, help="seconds of the long clip")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bgservice-bench-memory"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    args.workdir.mkdir(parents=True, exist_ok=True)

    import ray

    from bgservice.engines.ray.dag import run_job_ray, warm_up
    from bgservice.settings import Settings
    from bgservice.spec import JobSpec

    clips = {
        "short": make_clip(
            args.workdir / f"short-{args.short:g}s-{args.size}.mp4", args.short, width, height
        ),
        "long": make_clip(args.workdir / f"long-{args.long:g}s-{args.size}.mp4", args.long, width, height),
    }
    settings = Settings(tmp_dir=args.workdir / "scratch")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    gcs = str(ray.get_runtime_context().gcs_address)
    warm_up(settings, jobs=1)
    # a long-running service is in steady state: one unmeasured job first (imports, allocator pools, caches)
    run_job_ray(JobSpec.build(clips["short"], str(args.workdir / "prime-out.mp4"), end=5), settings)
    peaks: dict[str, float] = {}
    print(
        f"{'clip':<6} {'seconds':>8} {'frames':>7} {'wall s':>7} {'fps':>6} "
        f"{'peak MiB':>9} {'mean MiB':>9} {'peak PSS':>9} {'peak store':>10}"
    )
    for name, clip in clips.items():
        out = args.workdir / f"{name}-out.mp4"
        result: dict[str, object] = {}

        def job(clip: str = clip, out: Path = out, result: dict[str, object] = result) -> None:
            try:
                result["r"] = run_job_ray(JobSpec.build(clip, str(out)), settings)
            except BaseException as exc:
                result["error"] = exc

        t0 = time.monotonic()
        th = threading.Thread(target=job)
        th.start()
        samples = sample_while(th, gcs, args.interval)
        wall = time.monotonic() - t0
        if "error" in result:
            raise SystemExit(f"{name}: the job failed: {result['error']!r}")
        r = result["r"]
        frames = getattr(r, "frames", 0)
        mib = 1024**2
        totals = samples.totals
        peaks[name] = max(totals) / mib
        peaks[name + "-nodec"] = (
            max(a + b for a, b in zip(samples.without_decoder, samples.store, strict=True)) / mib
        )
        seconds = float(getattr(r, "duration_seconds", 0.0))
        print(
            f"{name:<6} {seconds:>8.1f} {frames:>7} {wall:>7.1f} {frames / wall:>6.1f} "
            f"{max(totals) / mib:>9.0f} {sum(totals) / len(totals) / mib:>9.0f} "
            f"{max(samples.pss) / mib:>9.0f} {max(samples.store) / mib:>10.0f}"
        )
        print(
            "       peak PSS by process: "
            + ", ".join(
                f"{r} {v / mib:.0f} MiB" for r, v in sorted(samples.by_role.items(), key=lambda kv: -kv[1])
            )
        )
        out.unlink(missing_ok=True)
    ratio = peaks["long"] / peaks["short"]
    print(f"peak memory ratio long/short = {ratio:.3f} (target <= 1.2): {'OK' if ratio <= 1.2 else 'OVER'}")
    nodec = peaks["long-nodec"] / peaks["short-nodec"]
    print(f"  the same without the decoder process : {nodec:.3f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
