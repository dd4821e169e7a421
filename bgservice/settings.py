"""One typed settings object, read once from ``BGSERVICE_*`` environment variables and passed down.

Every limit and knob an operator may turn lives here; the README's settings table mirrors this class.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bgservice.errors import InvalidSettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BGSERVICE_", frozen=True, extra="ignore")

    # --- input limits (input_too_large) -------------------------------------------------------------
    max_input_bytes: int = Field(2 * 1024**3, description="largest accepted input file, bytes")
    max_duration_seconds: float = Field(3600.0, description="longest accepted (trimmed) duration, seconds")
    max_pixels: int = Field(3840 * 2160, description="largest accepted frame, width x height")
    max_background_image_bytes: int = Field(50 * 1024**2, description="largest background image, bytes")

    # --- output encoding -------------------------------------------------------------------------------
    crf: int = Field(18, ge=0, le=51, description="x264 constant rate factor")
    preset: str = Field("veryfast", description="x264 preset")

    # --- processing ----------------------------------------------------------------------------------------
    model: str = Field("selfie", description="segmentation model name (see bgservice.models.registry)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="ONNX Runtime device")
    quality: Literal["auto", "fast", "best"] = Field(
        "auto", description="matte quality when a job names none: fast (Selfie), best (MODNet), auto (best "
        "where the Segmenter runs on CUDA)"
    )
    shard_frames: int = Field(32, ge=1, description="frames per shard sent to a Segmenter")
    tmp_dir: Path | None = Field(None, description="scratch directory (default: system temp)")

    # --- Ray DAG -------------------------------------------------------------------------------------------
    segmenter_gpus: str = Field("auto", description="GPU share per Segmenter: auto | 0 | <fraction>")
    segmenter_cpus: float = Field(0.5, gt=0, description="CPU share per Segmenter actor")
    pool_min: int = Field(2, ge=1, description="Segmenter pool: actors kept alive")
    pool_max: int = Field(8, ge=1, description="Segmenter pool: most actors")
    pool_shards_per_actor: int = Field(
        2, ge=1, description="pool growth rule: add an actor while queued shards exceed this per actor"
    )
    max_shards_in_flight: int = Field(4, ge=1, description="shards in flight per job (backpressure)")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from bgservice.models.registry import model_names

        if value not in model_names():
            raise ValueError(f"unknown model {value!r}; known: {', '.join(model_names())}")
        return value

    @field_validator("segmenter_gpus")
    @classmethod
    def _gpu_share(cls, value: str) -> str:
        text = value.strip().lower()
        if text == "auto":
            return text
        try:
            share = float(text)
        except ValueError:
            raise ValueError(f"must be auto, 0 or a fraction of a GPU, got {value!r}") from None
        if share < 0 or (share > 1 and not share.is_integer()):
            raise ValueError(f"must be auto, 0..1 or a whole number of GPUs, got {value!r}")
        return text


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once; a bad value is ``invalid_settings``."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"BGSERVICE_{'_'.join(str(part) for part in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidSettings(problems) from None
