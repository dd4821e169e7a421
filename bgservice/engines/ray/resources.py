"""What each actor asks Ray for, decided in one place.

Sizing rule (the embedded default is a 2-CPU laptop, ``ray.init(num_cpus=2)``): the Segmenter pool at its
minimum (``pool_min`` x ``segmenter_cpus`` = 2 x 0.5 = 1 CPU), two jobs at once (decoder 0.1 + encoder 0.2
each = 0.6 CPU) and a Serve app (0.4 CPU left) all fit, so nothing pends forever. The pool grows only while
``JOB_RESERVE_CPUS`` stays free for the next job, or when an autoscaler can add nodes. The fractions are
scheduling shares, not limits: a process may use more CPU while others idle.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

DECODER_CPUS = 0.1
ENCODER_CPUS = 0.2
POOL_MANAGER_CPUS = 0.0  # the pool manager only brokers leases; it must never block a job from starting
JOB_RESERVE_CPUS = DECODER_CPUS + ENCODER_CPUS
SERVICE_RESERVE_CPUS = 0.4  # what the HTTP service's replicas keep for themselves beside the jobs
AUTO_GPU_SHARE = 0.25  # four Segmenters per GPU: the model is small, the refinement is CPU-heavy
GPU_RESOURCE = "GPU"


def autoscaler_has_gpu_node_types(config_path: Path | None = None) -> bool:
    """True when the cluster launcher's config (on the head node) declares a node type with a GPU."""
    path = config_path or Path(os.path.expanduser("~/ray_bootstrap_config.yaml"))
    if not path.is_file():
        return False
    import yaml  # type: ignore[import-untyped]

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    node_types = (config or {}).get("available_node_types") or {}
    for node_type in node_types.values():
        resources = (node_type or {}).get("resources") or {}
        if float(resources.get(GPU_RESOURCE, 0) or 0) > 0:
            return True
    return False


def resolve_gpu_share(value: str, cluster_resources: dict[str, float], autoscaler_gpu: bool) -> float:
    """``BGSERVICE_SEGMENTER_GPUS``: ``auto`` | ``0`` | a fraction (of one GPU) per Segmenter.

    ``auto`` asks for :data:`AUTO_GPU_SHARE` when the cluster has a GPU now or its autoscaler can add GPU
    nodes, else no GPU. A share above 0 is the same Segmenter code: ONNX Runtime picks the CUDA provider.
    """
    text = value.strip().lower()
    if text == "auto":
        has_gpu = float(cluster_resources.get(GPU_RESOURCE, 0.0)) > 0 or autoscaler_gpu
        return AUTO_GPU_SHARE if has_gpu else 0.0
    try:
        share = float(text)
    except ValueError as exc:
        raise ValueError(f"BGSERVICE_SEGMENTER_GPUS must be auto, 0 or a fraction, got {value!r}") from exc
    if share < 0 or (share > 1 and not share.is_integer()):
        raise ValueError(f"BGSERVICE_SEGMENTER_GPUS must be 0..1 or a whole number, got {value!r}")
    return share


def segmenter_options(cpus: float, gpu_share: float) -> dict[str, Any]:
    """Ray actor options of one Segmenter: restartable, its tasks retried (they are idempotent)."""
    options: dict[str, Any] = {
        "num_cpus": cpus,
        "max_restarts": -1,
        "max_task_retries": 3,
    }
    if gpu_share > 0:
        options["num_gpus"] = gpu_share
    return options


def can_grow(available: dict[str, float], cpus: float, gpu_share: float, autoscaler_gpu: bool) -> bool:
    """Whether one more Segmenter can start now without starving the next job's decoder and encoder."""
    if gpu_share > 0:
        if autoscaler_gpu:
            return True  # a pending Segmenter is what makes the autoscaler add a GPU node
        if float(available.get(GPU_RESOURCE, 0.0)) < gpu_share:
            return False
    return float(available.get("CPU", 0.0)) >= cpus + JOB_RESERVE_CPUS


def jobs_that_fit(cpus: float, pool_min: int, segmenter_cpus: float, reserve: float = 0.0) -> int:
    """Jobs at once: decoder/encoder pairs that fit in ``cpus`` beside the pool's minimum and ``reserve``
    (at least 1). On 2 CPUs: 3 for a batch run, 2 beside the service (``reserve=SERVICE_RESERVE_CPUS``)."""
    spare = cpus - pool_min * segmenter_cpus - reserve
    return max(1, math.floor(spare / JOB_RESERVE_CPUS + 1e-9))
