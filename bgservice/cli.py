"""``bgservice`` command line.

Exit codes: 0 success; 2 the request is at fault (``error: <code>: <message>`` on stderr, no traceback);
1 anything else (``error: internal: ...``); 130 interrupted (Ctrl-C / SIGTERM), temporary files removed.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bgservice import __version__
from bgservice.engines import ENGINES, JobResult, ProgressFn, get_engine
from bgservice.errors import (
    InvalidBackground,
    InvalidBackgroundImage,
    InvalidBackgroundVideo,
    InvalidInput,
    Unauthorized,
    as_service_error,
)
from bgservice.interrupt import sigterm_as_interrupt
from bgservice.settings import Settings, get_settings
from bgservice.spec import JobSpec

if TYPE_CHECKING:
    from bgservice.client import Client, Job

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

    p = commands.add_parser("process", help="turn one video into the finished video")
    p.add_argument("input", metavar="INPUT", help="local path or fsspec URL (s3://bucket/key, ...)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="local path or fsspec URL; its extension (.mp4, .webm, .mov) implies the format",
    )
    p.add_argument(
        "--format",
        metavar="FORMAT",
        help="mp4 (default), webm (transparent VP9 + Opus), mov (transparent ProRes 4444), matte (the alpha "
        "matte as greyscale H.264); with a background webm/mov are opaque. Must agree with the extension",
    )
    # at most one background: checked by JobSpec.build (error invalid_background, exit 2)
    p.add_argument("--background", metavar="HEX", help="solid colour, #RGB or #RRGGBB (default: white)")
    p.add_argument("--background-image", metavar="PATH_OR_URL", help="JPEG/PNG/WebP behind the subject")
    p.add_argument(
        "--background-video",
        metavar="PATH_OR_URL",
        help="a video behind the subject: looped when shorter, cut when longer, its audio ignored",
    )
    p.add_argument(
        "--background-blur",
        metavar="N",
        help="the original background blurred, 1..100 (Gaussian sigma = N/1000 of the frame height)",
    )
    p.add_argument(
        "--fit",
        metavar="MODE",
        help="how an image or video background meets the frame: stretch (default), cover, contain",
    )
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
    _client_parsers(commands)

    s = commands.add_parser(
        "serve",
        help="run the HTTP service here: local Ray + Serve, SQLite and local storage by default",
        description="Run the HTTP API (Ray Serve) and the job runner on this machine. Prints the base URL, "
        "the /docs URL and the dev key. Ctrl-C or SIGTERM stops taking jobs; unfinished ones stay queued.",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--replicas", type=int, default=1, metavar="N", help="API replicas (default 1)")
    s.add_argument(
        "--no-runner",
        action="store_true",
        help="accept jobs but run none (they stay queued until a runner starts): for API tests",
    )
    s.add_argument("--debug", action="store_true", help="print tracebacks of internal errors")
    return parser


# --- `bgservice submit` and `bgservice jobs`: the service through its HTTP API (bgservice.client) -------


def _client_parsers(commands: Any) -> None:
    def connection(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--server", metavar="URL", help="the service (default: BGSERVICE_URL or http://127.0.0.1:8000)"
        )
        p.add_argument("--api-key", metavar="KEY", help="API key (default: BGSERVICE_API_KEY)")
        p.add_argument("--debug", action="store_true", help="print tracebacks of internal errors")

    s = commands.add_parser("submit", help="process one video on a running service (bgservice serve)")
    s.add_argument("input", metavar="INPUT", help="local file (uploaded as an asset), URL or asset id")
    s.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="where to save the result (default: INPUT's name + -bg and the format's extension, .mp4, "
        ".webm or .mov, in the current directory); its extension implies the format",
    )
    s.add_argument(
        "--format",
        metavar="FORMAT",
        help="mp4 (default), webm (transparent VP9), mov (transparent ProRes 4444), matte (the alpha as "
        "greyscale H.264); must agree with -o's extension",
    )
    # not an argparse mutually exclusive group: giving two is the documented invalid_background, exit 2
    s.add_argument("--background", metavar="HEX", help="solid colour, #RGB or #RRGGBB (default: white)")
    s.add_argument(
        "--background-image",
        metavar="PATH_OR_URL",
        help="JPEG/PNG/WebP behind the subject (a local file is uploaded)",
    )
    s.add_argument(
        "--background-video",
        metavar="PATH_OR_URL",
        help="a video behind the subject, looped or cut to length (a local file is uploaded)",
    )
    s.add_argument("--background-blur", metavar="N", help="the original background blurred, 1..100")
    s.add_argument(
        "--fit", metavar="MODE", help="image/video background: stretch (default), cover, contain"
    )
    s.add_argument("--quality", metavar="MODE", help="fast or best (default: the service's setting)")
    s.add_argument("--start", metavar="T", help="trim start: seconds (12.5) or [hh:]mm:ss(.fff)")
    s.add_argument("--end", metavar="T", help="trim end (clamped to the video's end)")
    s.add_argument("--no-wait", action="store_true", help="print the job id and exit once it is queued")
    connection(s)

    j = commands.add_parser("jobs", help="list, inspect, cancel or download the service's jobs")
    jobs = j.add_subparsers(dest="jobs_command", required=True)
    jl = jobs.add_parser("list", help="the key's jobs, newest first")
    jl.add_argument("--status", choices=["queued", "running", "completed", "failed", "cancelled"])
    jl.add_argument("--limit", type=int, default=20, help="at most this many (default 20, at most 100)")
    jl.add_argument("--cursor", help="next_cursor of a previous page")
    jl.add_argument("--json", action="store_true", help="print the API's JSON page")
    connection(jl)
    for name, helptext in (("get", "print a job as JSON"), ("cancel", "cancel a queued or running job")):
        jp = jobs.add_parser(name, help=helptext)
        jp.add_argument("job_id", metavar="JOB_ID")
        connection(jp)
    jd = jobs.add_parser("download", help="save a completed job's result")
    jd.add_argument("job_id", metavar="JOB_ID")
    jd.add_argument("-o", "--output", required=True, metavar="OUT.mp4")
    connection(jd)


def _client(args: argparse.Namespace) -> Client:
    from bgservice.client import Client

    settings = get_settings()
    url = args.server or settings.url
    key = args.api_key or settings.api_key
    if not key and urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1"):
        # a local `bgservice serve` on the embedded default: its dev key, from the same data dir
        from bgservice.api.auth import dev_key

        key = dev_key(settings, create=False)
    if not key:
        raise Unauthorized("no API key: pass --api-key or set BGSERVICE_API_KEY (bgservice serve prints it)")
    return Client(url, key)


def _is_remote(ref: str) -> bool:
    return "://" in ref or ref.startswith("asset_")


class _JobBar:
    """Follows a job: a percentage bar on a terminal, one line per status change otherwise."""

    def __init__(self, job_id: str) -> None:
        self._id = job_id
        self._tty = sys.stderr.isatty()
        self._bar: Any = None
        self._status = ""

    def __call__(self, job: Job) -> None:
        if self._tty:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=100,
                    desc=self._id[:8],
                    unit="%",
                    dynamic_ncols=True,
                    leave=False,
                    bar_format="{desc} {postfix} |{bar}| {n:.0f}% [{elapsed}<{remaining}]",
                )
            self._bar.set_postfix_str(job.status, refresh=False)
            self._bar.update(round(job.progress * 100, 1) - self._bar.n)
        elif job.status != self._status:
            print(f"job {job.id}: {job.status}", file=sys.stderr)
        self._status = job.status

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _bytes_bar(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A byte-count progress bar on a terminal (uploads, downloads); silent otherwise."""
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if "bar" not in state:
            from tqdm import tqdm

            state["bar"] = tqdm(
                total=total or None, desc=label, unit="B", unit_scale=True, dynamic_ncols=True, leave=False
            )
        state["bar"].update(done - state["bar"].n)

    def close() -> None:
        if "bar" in state:
            state["bar"].close()

    return update, close


def _upload(client: Client, path: str, what: str) -> str:
    local = Path(path)
    if not local.is_file():
        error, field = {
            "input": (InvalidInput, "videoUrl"),
            "background video": (InvalidBackgroundVideo, "backgroundVideoUrl"),
        }.get(what, (InvalidBackgroundImage, "imageUrl"))
        raise error(f"{path}: no such file (give a local file, a URL or an asset id)", field=field)
    update, close = _bytes_bar(f"upload {local.name[:30]}")
    try:
        return client.upload(local, progress=update).asset_id
    finally:
        close()


def submit(args: argparse.Namespace) -> int:
    from bgservice.spec import Background, parse_blur, parse_quality, resolve_output_format

    if args.background is not None and args.background_image is not None:
        raise InvalidBackground("give --background or --background-image, not both", field="back_ground")
    # the same checks as `bgservice process` (exit 2) before anything is uploaded
    fmt = resolve_output_format(args.output or "", args.format) if args.format or args.output else None
    blur = parse_blur(args.background_blur)
    background = Background.parse(
        args.background, args.background_image, args.background_video, blur, args.fit
    )
    if fmt == "matte" and background.given:
        raise InvalidBackground("the matte output has no background: leave the background out")
    quality = parse_quality(args.quality)
    with _client(args) as client:
        video = args.input if _is_remote(args.input) else _upload(client, args.input, "input")
        image = args.background_image
        if image is not None and not _is_remote(image):
            image = _upload(client, image, "background image")
        bg_video = args.background_video
        if bg_video is not None and not _is_remote(bg_video):
            bg_video = _upload(client, bg_video, "background video")
        accepted = client.submit(
            video,
            background=args.background,
            image=image,
            start=args.start,
            end=args.end,
            output_format=fmt if args.format or fmt != "mp4" else None,
            background_blur=blur,
            background_video=bg_video,
            fit=background.fit if args.fit is not None else None,
            quality=quality,
        )
        if args.no_wait:
            print(accepted.id)
            return 0
        bar = _JobBar(accepted.id)
        try:
            print(f"job {accepted.id} queued", file=sys.stderr, flush=True)
            job = client.wait(accepted.id, progress=bar)
        except KeyboardInterrupt:
            bar.close()
            print(
                f"interrupted: job {accepted.id} keeps running on the service.\n"
                f"  follow it:  bgservice jobs get {accepted.id}\n"
                f"  cancel it:  bgservice jobs cancel {accepted.id}",
                file=sys.stderr,
            )
            return 130
        finally:
            bar.close()
        ext = job.result_data.extension if job.result_data is not None else ".mp4"
        out = Path(args.output) if args.output else Path.cwd() / f"{_stem(args.input) or job.id}-bg{ext}"
        update, close = _bytes_bar(f"download {out.name[:30]}")
        try:
            client.download(job, out, progress=update)
        finally:
            close()
    result = job.result_data
    assert result is not None
    print(
        f"{out}: job {job.id}, {result.duration_seconds:.3f}s, billed {result.usage.billed_seconds}s "
        f"(${result.usage.amount_usd})"
    )
    return 0


def _stem(ref: str) -> str:
    if ref.startswith("asset_"):
        return ref
    name = ref.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        cmd = args.jobs_command
        if cmd == "list":
            page = client.list(status=args.status, limit=args.limit, cursor=args.cursor)
            if args.json:
                print(page.model_dump_json(indent=2))
                return 0
            for job in page.jobs:
                when = job.created_at.strftime("%Y-%m-%d %H:%M:%S")
                line = f"{job.id}  {job.status:<9}  {job.progress:4.0%}  {when}"
                if job.error is not None:
                    line += f"  {job.error.code}: {job.error.message}"
                print(line)
            if page.next_cursor:
                print(f"more: bgservice jobs list --cursor {page.next_cursor}", file=sys.stderr)
            return 0
        if cmd == "get":
            print(client.get(args.job_id).model_dump_json(indent=2))
            return 0
        if cmd == "cancel":
            job = client.cancel(args.job_id)
            print(f"{job.id}: {job.status}")
            return 0
        update, close = _bytes_bar("download")
        try:
            out = client.download(args.job_id, args.output, progress=update)
        finally:
            close()
        print(out)
        return 0


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
    from bgservice.models.onnx_session import require_runtime  # MissingExtra: no cpu/gpu extra

    require_runtime()
    settings = base.model_copy(update=overrides) if overrides else base
    spec = JobSpec.build(
        args.input,
        args.output,
        colour=args.background,
        image_url=args.background_image,
        start=args.start,
        end=args.end,
        output_format=args.format,
        background_blur=args.background_blur,
        background_video_url=args.background_video,
        fit=args.fit,
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
    # bgservice starts or joins Ray explicitly (ensure_ray); a Ray call made after this process left
    # Ray must fail rather than quietly start another local Ray (Ray's auto-init).
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    args = _parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            if args.command == "process":
                return process(args)
            if args.command == "submit":
                return submit(args)
            if args.command == "jobs":
                return jobs(args)
            if args.command == "serve":
                # one request line per request on the console: Ray would fold similar lines from all
                # replicas into one "[repeated Nx across cluster]" (read when Ray is imported)
                os.environ.setdefault("RAY_DEDUP_LOGS", "0")
                from bgservice.api.server import run as serve

                if not args.no_runner:  # this process starts the runner, which runs the models
                    from bgservice.models.onnx_session import require_runtime

                    require_runtime()
                return serve(
                    get_settings(),
                    args.host,
                    args.port,
                    replicas=args.replicas,
                    start_runner=not args.no_runner,
                )
        return 2  # pragma: no cover - argparse rejects unknown commands
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # a project error as it is (2 user, 1 internal/stage, 130 cancelled), even wrapped; else internal
        err = as_service_error(exc)
        if err.exit_code == 1 and getattr(args, "debug", False):
            traceback.print_exc()
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
