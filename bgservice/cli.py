"""``bgservice`` command line.

Exit codes: 0 success; 2 the request is at fault (``error: <code>: <message>`` on stderr, no traceback);
1 anything else (``error: internal: ...``); 130 interrupted (Ctrl-C / SIGTERM), temporary files removed.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from bgservice import __version__
from bgservice.engines import ENGINES, JobResult, ProgressFn, get_engine
from bgservice.errors import as_service_error
from bgservice.interrupt import sigterm_as_interrupt
from bgservice.settings import Settings, get_settings
from bgservice.spec import JobSpec

DEFAULT_ENGINE = "auto"


def pick_engine(requested: str, environ: Mapping[str, str]) -> str:
    """``auto`` (the default): the Ray DAG when ``RAY_ADDRESS`` names a cluster, else this process.

    Starting a local Ray costs seconds per command and on one machine the one-process engine already
    keeps every core busy (decode, shard workers and x264 overlap); the DAG pays off on a cluster."""
    if requested != "auto":
        return requested
    return "ray" if environ.get("RAY_ADDRESS") else "local"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bgservice", description="Remove or replace the background of videos."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("process", help="turn one video into the finished MP4")
    p.add_argument("input", metavar="INPUT", help="local path or fsspec URL (s3://bucket/key, ...)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="local path or fsspec URL")
    bg = p.add_mutually_exclusive_group()
    bg.add_argument("--background", metavar="HEX", help="solid colour, #RGB or #RRGGBB (default: white)")
    bg.add_argument("--background-image", metavar="PATH_OR_URL", help="JPEG/PNG/WebP stretched to the frame")
    p.add_argument("--start", metavar="T", help="trim start: seconds (12.5) or [hh:]mm:ss(.fff)")
    p.add_argument("--end", metavar="T", help="trim end (clamped to the video's end)")
    p.add_argument(
        "--engine",
        choices=("auto", *ENGINES),
        default=DEFAULT_ENGINE,
        help="auto (default): ray when RAY_ADDRESS is set, else local; ray: the job as a Ray DAG on the "
        "cluster at RAY_ADDRESS, else on a local Ray started on demand; local: everything in this process",
    )
    p.add_argument(
        "--quality",
        choices=("fast", "best"),
        help="matte quality: fast (MediaPipe Selfie) or best (MODNet); default: BGSERVICE_QUALITY (auto: "
        "best where the Segmenters run on a GPU, else fast)",
    )
    p.add_argument("--crf", type=int, help="x264 CRF (default: BGSERVICE_CRF or 18)")
    p.add_argument("--preset", help="x264 preset (default: BGSERVICE_PRESET or veryfast)")
    p.add_argument("--debug", action="store_true", help="print tracebacks of internal errors")
    return parser


class _Progress:
    """A tqdm bar on a terminal (frames done / total, fps, ETA); silent when stderr is not a TTY."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None
        self._enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self._label, unit="frame", dynamic_ncols=True, leave=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _run(spec: JobSpec, settings: Settings, engine: str, progress: ProgressFn) -> JobResult:
    runner = get_engine(engine)
    if engine == "local":
        return runner.run(spec, settings, progress=progress)
    import ray

    started_here = not ray.is_initialized()
    try:
        return runner.run(spec, settings, progress=progress)
    finally:
        if started_here and ray.is_initialized():
            # Disconnect (and stop a Ray this command started) before the interpreter exits: leaving
            # it to atexit after an interrupt can crash the process instead of exiting with 130.
            ray.shutdown()


def process(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.crf is not None:
        overrides["crf"] = args.crf
    if args.preset is not None:
        overrides["preset"] = args.preset
    base = get_settings()
    settings = base.model_copy(update=overrides) if overrides else base
    spec = JobSpec.build(
        args.input,
        args.output,
        colour=args.background,
        image_url=args.background_image,
        start=args.start,
        end=args.end,
        quality=args.quality,
    )
    progress = _Progress(label=args.input.rsplit("/", 1)[-1][:40])
    try:
        engine = pick_engine(args.engine, os.environ)
        result = _run(spec, settings, engine, progress)
    finally:
        progress.close()
    audio = "with audio" if result.has_audio else "no audio"
    print(
        f"{result.output_url}: {result.width}x{result.height}, {result.frames} frames, "
        f"{result.duration_seconds:.3f}s, {audio}, engine {engine}, quality {result.quality}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            if args.command == "process":
                return process(args)
        return 2  # pragma: no cover - argparse rejects unknown commands
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # a project error as it is (2 user, 1 internal/stage, 130 cancelled), even wrapped; else internal
        err = as_service_error(exc)
        if err.exit_code == 1 and args.debug:
            traceback.print_exc()
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
