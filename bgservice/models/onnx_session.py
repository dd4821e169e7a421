"""ONNX Runtime sessions: providers chosen at run time, the model file's sha256 checked once at load.

Device rule (``BGSERVICE_DEVICE``):

- ``auto``: CUDA when ``CUDAExecutionProvider`` is in ``onnxruntime.get_available_providers()`` (the
  ``gpu`` extra, onnxruntime-gpu) *and* a session actually starts on it (a GPU is there); else CPU.
- ``cuda``: CUDA or :class:`DeviceUnavailable` with what is missing -- never a silent CPU fallback.
- ``cpu``: CPU only, even on a GPU machine.

Threads: ``intra_op_num_threads`` is, unless given, ``OMP_NUM_THREADS`` when set (Ray sets it to an
actor's CPU share) else the CPUs this process may run on (``sched_getaffinity``), capped at 8 (the
model is small; more threads only add synchronisation). Spinning is off so several sessions sharing a
machine (Ray actors) do not burn idle cores.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bgservice.errors import InternalError, MissingExtra

try:
    import onnxruntime as ort
except ModuleNotFoundError as exc:  # `pip install .` without the cpu / gpu extra
    if not (exc.name or "").startswith("onnxruntime"):
        raise
    raise MissingExtra() from None



def require_runtime() -> None:
    """For the entry points that run jobs, before they start anything: importing this module already
    raised :class:`MissingExtra` (``invalid_settings``, exit 2) if ONNX Runtime is not installed."""


DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
MAX_DEFAULT_THREADS = 8


class DeviceUnavailable(InternalError):
    """The requested device cannot be used (e.g. ``cuda`` without onnxruntime-gpu or a GPU)."""


class ModelIntegrityError(InternalError):
    """A model file is missing or its sha256 does not match the one recorded in SHA256SUMS."""


def choose_providers(device: str, available: Sequence[str] | None = None) -> list[str]:
    """The execution providers to ask for, best first, for ``device`` given the available ones."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    avail = list(ort.get_available_providers() if available is None else available)
    if device == "cpu":
        return [CPU]
    if CUDA in avail:
        return [CUDA, CPU]
    if device == "cuda":
        raise DeviceUnavailable(
            "device 'cuda' requested but onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(avail) or 'none'}); install the 'gpu' extra (onnxruntime-gpu) "
            "on a machine with an NVIDIA GPU, or set BGSERVICE_DEVICE=auto/cpu"
        )
    return [CPU]


def default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_THREADS))


def read_sha256sums(path: Path) -> dict[str, str]:
    """``{file name: sha256}`` from a ``sha256sum``-style file."""
    sums: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        sums[name.strip().lstrip("*")] = digest.strip().lower()
    return sums


def verify_sha256(model_path: Path, sums_path: Path) -> str:
    """Check ``model_path`` against its line in ``sums_path`` (about 1 ms for these files; done at every
    session creation, and sessions are cached per process). Returns the sha256.
    Raises :class:`ModelIntegrityError`."""
    try:
        expected = read_sha256sums(sums_path).get(model_path.name)
    except OSError as exc:
        raise ModelIntegrityError(f"{sums_path} cannot be read: {exc}") from None
    if expected is None:
        raise ModelIntegrityError(f"{model_path.name} is not listed in {sums_path}")
    try:
        digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelIntegrityError(f"model file {model_path} cannot be read: {exc}") from None
    if digest != expected:
        raise ModelIntegrityError(
            f"{model_path} has sha256 {digest}, but {sums_path.name} says {expected}: the model file is "
            "corrupt or was replaced; reinstall the package or regenerate with bgservice.models.convert"
        )
    return digest


def create_session(
    model_path: Path,
    device: str = "auto",
    *,
    sums_path: Path | None = None,
    intra_op_threads: int | None = None,
    available: Sequence[str] | None = None,
    model: bytes | None = None,
) -> ort.InferenceSession:
    """An InferenceSession for ``model_path`` on ``device`` (see the module doc for the rule).

    ``sums_path`` (default: ``SHA256SUMS`` beside the model) is checked first. ``model``: the graph to
    run instead of the file's own, derived from the (checked) file in memory (MODNet's fp16 variant).
    """
    verify_sha256(model_path, sums_path or model_path.with_name("SHA256SUMS"))
    providers = choose_providers(device, available)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = intra_op_threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: a CUDA fallback is reported by us, not by ORT's logger
    provider_args: list[Any] = list(providers)
    source: str | bytes = str(model_path) if model is None else model
    session = ort.InferenceSession(source, sess_options=opts, providers=provider_args)
    active = session.get_providers()
    if device == "cuda" and CUDA not in active:
        raise DeviceUnavailable(
            "device 'cuda' requested and onnxruntime-gpu is installed, but the CUDA provider did not "
            f"start (active: {', '.join(active)}): no usable NVIDIA GPU / CUDA runtime on this machine"
        )
    return session
