"""GPU throughput: the model stage with ONNX Runtime IO binding (fp32 and fp16), and a whole 1080p job.

    .venv/bin/python -m benchmarks.gpu [--frames 200] [--batch 8]

Needs the ``gpu`` extra (onnxruntime-gpu) and an NVIDIA GPU. Without the CUDA provider it says that no
GPU was found and exits 0 (so it can run anywhere). What it prints, per model in the registry:

- frames per second of the model alone at 1080p input, batches of ``--batch``, inputs and outputs bound
  on the GPU with IO binding (no host round trip per call), fp32 and an fp16 copy of the graph
  (converted here with ONNX Runtime's own float16 tool; the first run's outputs are compared with fp32:
  mean |difference| reported, so a setting that loses quality shows);
- a whole job (`bgservice.engines.local.run_job` with ``BGSERVICE_DEVICE=cuda``) on the speed benchmark's
  1080p talking-head clip: wall, frames per second and each stage's seconds, to show what bounds it
  (decode and x264 stay on the CPU).
Nothing is asserted: a measurement.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CUDA = "CUDAExecutionProvider"


def _providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _fp16_copy(src: Path, dst: Path) -> bool:
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        print(f"  fp16: skipped ({exc})")
        return False
    model = onnx.load(str(src))
    onnx.save(convert_float_to_float16(model, keep_io_types=True), str(dst))
    return True


def _bound_fps(path: Path, shape: tuple[int, ...], frames: int, batch: int) -> tuple[float, Any]:
    """Frames per second of ``path`` on CUDA with IO binding; returns (fps, first output on the host)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=[CUDA, "CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    out = sess.get_outputs()[0]
    x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    x_gpu = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(inp.name, x_gpu)
    binding.bind_output(out.name, "cuda", 0)
    sess.run_with_iobinding(binding)  # warm-up (cuDNN autotune)
    first = binding.copy_outputs_to_cpu()[0]
    calls = max(1, frames // batch)
    t0 = time.perf_counter()
    for _ in range(calls):
        sess.run_with_iobinding(binding)
    binding.synchronize_outputs()
    took = time.perf_counter() - t0
    return calls * batch / took, first


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    providers = _providers()
    if CUDA not in providers:
        print(
            f"no GPU found: the CUDA provider is not available (providers: {', '.join(providers)}); "
            "install the gpu extra on a machine with an NVIDIA GPU"
        )
        return 0
    from bgservice.models.registry import MODELS

    print(f"model stage, IO binding, batch {args.batch}, {args.frames} frames")
    with tempfile.TemporaryDirectory() as tmp:
        for name, cls in MODELS.items():
            model: Any = cls("cuda")  # type: ignore[call-arg]
            path = Path(model.path)
            sess_input = model._session.get_inputs()[0].shape
            shape = tuple(int(d) if isinstance(d, int) else 1 for d in sess_input[1:])
            if shape[-1] != 3 and any(
                d == 1 for d in shape[1:]
            ):  # dynamic H, W (MODNet): 288x512 ~ 1080p / 3.75
                shape = (3, 288, 512)
            fps32, ref = _bound_fps(path, shape, args.frames, args.batch)
            line = f"{name:18} fp32 {fps32:8.0f} fps"
            half = Path(tmp) / f"{name}.fp16.onnx"
            if _fp16_copy(path, half):
                fps16, out16 = _bound_fps(half, shape, args.frames, args.batch)
                diff = float(np.abs(out16.astype(np.float32) - ref.astype(np.float32)).mean())
                line += f"   fp16 {fps16:8.0f} fps (mean |fp16 - fp32| {diff:.4f})"
            print(line)
    from benchmarks.speed import make_clip
    from bgservice.engines.local import StageTimes, run_job
    from bgservice.settings import Settings
    from bgservice.spec import JobSpec

    clip = make_clip("talking")
    settings = Settings(device="cuda")
    with tempfile.TemporaryDirectory() as tmp:
        timings = StageTimes()
        t0 = time.perf_counter()
        result = run_job(
            JobSpec.build(str(clip), f"{tmp}/out.mp4", colour="#1E90FF"), settings, timings=timings
        )
        wall = time.perf_counter() - t0
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(timings.items()))
    print(
        f"whole job 1080p: {result.frames} frames in {wall:.1f}s = {result.frames / wall:.0f} fps; {stages}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
