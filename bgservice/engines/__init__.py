"""Engines run one job, given its :class:`~bgservice.spec.JobSpec`, and return a
:class:`~bgservice.engines.base.JobResult` or raise a :mod:`bgservice.errors` error.

- :mod:`bgservice.engines.local`: everything in this process (the reference).
- :mod:`bgservice.engines.ray`: the job as a Ray DAG (decoder -> Segmenter pool -> encoder).

Both build on :mod:`bgservice.stages`; the jobs layer (:mod:`bgservice.jobs`) and the entry points pick one
with :func:`get_engine`.
"""

from __future__ import annotations

from bgservice.engines.base import CancelToken, Engine, JobResult, ProgressFn

ENGINES = ("ray", "local")


def get_engine(name: str) -> Engine:
    """The engine called ``name`` (``ray`` or ``local``); imports Ray only for ``ray``."""
    if name == "local":
        from bgservice.engines.local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from bgservice.engines.ray.dag import RayEngine

        return RayEngine()
    raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "CancelToken", "Engine", "JobResult", "ProgressFn", "get_engine"]
