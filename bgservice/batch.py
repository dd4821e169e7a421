"""Run a manifest of jobs on Ray: ``python -m bgservice.batch MANIFEST.jsonl [--report PATH]``.

Made for ``ray job submit --working-dir . -- python -m bgservice.batch jobs.jsonl`` (``RAY_ADDRESS`` is set
by Ray there; without it a local Ray is started). Each line of the manifest is one JSON object::

    {"videoUrl": "s3://in/a.mp4", "back_ground": "#1E90FF", "start": "0:05", "end": 20, "output": "s3://out/a.mp4"}

At most one background: ``back_ground`` (a hex colour), ``imageUrl`` (a picture), ``backgroundVideoUrl``
(a video, looped) or ``backgroundBlur`` (1..100, the original background blurred); ``fit`` (``stretch`` |
``cover`` | ``contain``) with an image or a video; ``outputFormat`` (``mp4`` | ``webm`` | ``mov`` |
``matte``; by default what the output's extension implies); ``start`` / ``end`` optional (seconds or
``[hh:]mm:ss``); ``quality`` optional, ``"fast"`` or ``"best"`` (default: ``BGSERVICE_QUALITY``;
another value: ``invalid_request``); ``output`` an absolute path or an fsspec URL. Blank lines are
skipped. Every valid line is queued as a job in a private job store (SQLite in a temporary directory) and a
job runner (:mod:`bgservice.jobs.runner`, in this process) runs them on Ray, up to ``--jobs`` at once (by
default as many as the cluster's CPUs hold beside the Segmenter pool); the Segmenter pool shares its
actors fairly between them.

Prints a summary table and writes a JSONL report (default: beside the manifest,
``<name>.report.jsonl``; manifest and report may be fsspec URLs), one object per line: ``line``,
``status`` (``done`` | ``failed``), ``output``,
``duration_seconds`` (the processed video's duration), ``elapsed_seconds``, ``quality`` (the matte quality
that ran), ``error_code``,
``error_message``. Exit status: 0 every line done, 1 some line failed, 2 the manifest cannot be read,
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec

from bgservice.errors import (
    BgServiceError,
    FetchFailed,
    InvalidBackground,
    InvalidManifest,
    InvalidSettings,
)
from bgservice.interrupt import sigterm_as_interrupt
from bgservice.jobs.record import JobRecord, JobState
from bgservice.settings import Settings, get_settings
from bgservice.spec import JobSpec
from bgservice.storage import publish

POLL_SECONDS = 0.2  # how often the batch looks at its jobs' records
KNOWN_KEYS = {
    "videoUrl",
    "back_ground",
    "imageUrl",
    "backgroundVideoUrl",
    "backgroundBlur",
    "fit",
    "outputFormat",
    "start",
    "end",
    "output",
    "quality",
}


@dataclass
class LineReport:
    line: int
    status: str  # "done" | "failed"
    output: str | None
    duration_seconds: float | None = None
    elapsed_seconds: float | None = None
    quality: str | None = None  # the matte quality that ran ("fast" / "best")
    error_code: str | None = None
    error_message: str | None = None


def default_report_path(manifest: str) -> str:
    """``<dir>/<name>.report.jsonl`` beside ``<dir>/<name>.jsonl`` (a local path or a URL)."""
    head, sep, name = manifest.rpartition("/")
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
    return f"{head}{sep}{stem}.report.jsonl"


def read_manifest(url: str) -> list[tuple[int, str]]:
    """The non-blank lines with their 1-based numbers; :class:`InvalidManifest` when unreadable.

    ``url`` is a local path or an fsspec URL (``s3://...``: handy under ``ray job submit``).
    """
    try:
        with fsspec.open(url, "rb") as f:  # a local path or any fsspec URL
            data = f.read()
        text = data.decode("utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        raise InvalidManifest(f"cannot read the manifest {url}: {exc}") from exc
    except (UnicodeDecodeError, ValueError, ImportError) as exc:  # not text, or an unknown URL scheme
        raise InvalidManifest(f"cannot read the manifest {url}: {exc}") from exc
    except Exception as exc:  # OSError, or a store's own (botocore's EndpointConnectionError is not one)
        raise FetchFailed(f"cannot fetch the manifest {url}: {type(exc).__name__}: {exc}") from exc
    lines = [(n, raw) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
    if not lines:
        raise InvalidManifest(f"the manifest {url} has no jobs")
    return lines


def write_report(url: str, reports: Sequence[LineReport]) -> None:
    """The JSONL report, written whole: published like a job's output (:func:`bgservice.storage.publish`)."""
    body = "".join(json.dumps(asdict(r)) + "\n" for r in reports).encode("utf-8")
    with tempfile.NamedTemporaryFile("wb", prefix="bgservice-report-", suffix=".jsonl", delete=False) as f:
        f.write(body)
    publish(f.name, url)


def _text(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidManifest(f"{key} must be a string")
    return value


def parse_line(raw: str) -> JobSpec:
    """One manifest line -> a validated :class:`JobSpec`; raises the matching project error."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidManifest(f"not a JSON object: {exc.msg}") from exc
    if not isinstance(obj, dict):
        raise InvalidManifest("each line must be a JSON object")
    unknown = sorted(set(obj) - KNOWN_KEYS)
    if unknown:
        raise InvalidManifest(
            f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(KNOWN_KEYS))}"
        )
    video = _text(obj.get("videoUrl"), "videoUrl")
    output = _text(obj.get("output"), "output")
    if not video:
        raise InvalidManifest("videoUrl is missing")
    if not output:
        raise InvalidManifest("output is missing")
    if "://" not in output and not Path(output).is_absolute():
        raise InvalidManifest(f"output must be an absolute path or a URL, got {output!r}")
    start, end = obj.get("start"), obj.get("end")
    for key, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            raise InvalidManifest(f"{key} must be seconds or a time string")
    blur = obj.get("backgroundBlur")
    if blur is not None and (isinstance(blur, bool) or not isinstance(blur, int)):
        raise InvalidBackground(f"backgroundBlur must be an integer 1..100, got {blur!r}")
    return JobSpec.build(
        video,
        output,
        colour=_text(obj.get("back_ground"), "back_ground"),
        image_url=_text(obj.get("imageUrl"), "imageUrl"),
        start=start,
        end=end,
        output_format=_text(obj.get("outputFormat"), "outputFormat"),
        background_blur=blur,
        background_video_url=_text(obj.get("backgroundVideoUrl"), "backgroundVideoUrl"),
        fit=_text(obj.get("fit"), "fit"),
        quality=obj.get("quality"),  # "fast" | "best"; another value: invalid_request, as over HTTP
    )


def default_concurrency(settings: Settings) -> int:
    """Jobs at once: as many decoder/encoder pairs as the cluster's CPUs hold beside the pool's minimum."""
    import ray

    from bgservice.engines.ray.resources import jobs_that_fit

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return jobs_that_fit(float(resources.get("CPU", 1.0)), settings.pool_min, settings.segmenter_cpus)


def _line_report(number: int, spec: JobSpec, record: JobRecord) -> LineReport:
    elapsed = None
    if record.started_at is not None and record.finished_at is not None:
        elapsed = round((record.finished_at - record.started_at).total_seconds(), 3)
    if record.state == JobState.COMPLETED and record.result is not None:
        return LineReport(
            number,
            "done",
            str(record.result.get("output_url", spec.output_url)),
            duration_seconds=record.result.get("duration_seconds"),
            elapsed_seconds=elapsed,
            quality=record.result.get("quality") or None,
        )
    error = record.error or {"code": "internal", "message": f"the job ended {record.state.value}"}
    return LineReport(
        number,
        "failed",
        spec.output_url,
        elapsed_seconds=elapsed,
        error_code=error.get("code", "internal"),
        error_message=error.get("message", ""),
    )


def run_manifest(
    lines: Sequence[tuple[int, str]], settings: Settings, jobs: int | None = None
) -> list[LineReport]:
    """Validate every line, queue the valid ones in a job store, run them with a job runner on Ray
    (``jobs`` at once), and report every line in order.

    The store is a private SQLite file in a temporary directory: a batch run is one process's work, and
    its report (not the store) is what it leaves behind.
    """
    from bgservice.engines.ray.dag import ensure_ray
    from bgservice.jobs.runner import Runner
    from bgservice.jobs.store import JobStore

    reports: dict[int, LineReport] = {}
    specs: list[tuple[int, JobSpec]] = []
    for number, raw in lines:
        try:
            specs.append((number, parse_line(raw)))
        except BgServiceError as exc:
            reports[number] = LineReport(
                number, "failed", None, error_code=exc.code, error_message=exc.message
            )
    if specs:
        ensure_ray()
        limit = jobs or default_concurrency(settings)
        # every line is the same (local) owner: the per-key cap is the run's own limit
        run_settings = settings.model_copy(
            update={"max_running_jobs": limit, "max_running_jobs_per_key": limit}
        )
        with tempfile.TemporaryDirectory(prefix="bgservice-batch-") as data_dir:
            store = JobStore(f"sqlite:///{Path(data_dir).resolve() / 'jobs.db'}")
            runner: Runner | None = None
            try:
                queued = {store.create(spec.to_dict()).id: (number, spec) for number, spec in specs}
                runner = Runner(run_settings, store, engine="ray", name="bgservice-batch").start()
                while queued:
                    for job_id, (number, spec) in list(queued.items()):
                        record = store.get(job_id)
                        if record is None or not record.state.terminal:
                            continue
                        del queued[job_id]
                        report = reports[number] = _line_report(number, spec, record)
                        status = f"{report.status} {report.error_code or ''}".rstrip()
                        print(f"line {number}: {status}", file=sys.stderr)
                    if queued:
                        time.sleep(POLL_SECONDS)
            except KeyboardInterrupt:
                if runner is not None:  # the jobs are cancelled: their actors go, scratch is removed
                    runner.stop(graceful=True)
                    runner.wait(30)
                    runner = None
                raise
            finally:
                if runner is not None:
                    runner.stop(graceful=True)
                    runner.wait(30)
                store.close()
    return [reports[n] for n, _ in lines]


def summary_table(reports: Sequence[LineReport]) -> str:
    rows = [("line", "status", "seconds", "output / error")]
    for r in reports:
        detail = (r.output or "") if r.status == "done" else f"{r.error_code}: {r.error_message}"
        secs = "" if r.duration_seconds is None else f"{r.duration_seconds:.2f}"
        rows.append((str(r.line), r.status, secs, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    out = [f"{a:>{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    done = sum(r.status == "done" for r in reports)
    out.append(f"{done}/{len(reports)} done, {len(reports) - done} failed")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgservice.batch", description=__doc__.split("\n")[0])
    parser.add_argument("manifest", help="JSONL file (path or fsspec URL), one job per line")
    parser.add_argument(
        "--report", default=None, help="JSONL report, path or URL (default: beside the manifest)"
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="jobs at once (default: what the cluster holds)"
    )
    args = parser.parse_args(argv)
    try:
        lines = read_manifest(args.manifest)
    except (InvalidManifest, FetchFailed) as exc:  # exit 2, or 1 when the store did not answer
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    report_path: str = args.report or default_report_path(args.manifest)
    try:
        settings = get_settings()
        from bgservice.models.onnx_session import require_runtime  # MissingExtra: no cpu/gpu extra

        require_runtime()
    except InvalidSettings as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    try:
        with sigterm_as_interrupt():  # `ray job stop` sends SIGTERM: cancel the jobs like Ctrl-C
            reports = run_manifest(lines, settings, args.jobs)
    except KeyboardInterrupt:
        print("error: cancelled: interrupted", file=sys.stderr)
        return 130
    try:
        write_report(report_path, reports)
    except (OSError, BgServiceError) as exc:
        print(f"error: cannot write the report {report_path}: {exc}", file=sys.stderr)
        print(summary_table(reports))
        return 1
    print(summary_table(reports))
    print(f"report: {report_path}")
    return 0 if all(r.status == "done" for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
