"""One typed settings object, read once from ``BGSERVICE_*`` environment variables and passed down.

Every limit and knob an operator may turn lives here; the README's settings table mirrors this class.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bgservice.errors import InvalidSettings

# The names BGSERVICE_MODEL accepts: bgservice.models.registry registers exactly these (a test checks),
# so the settings need not import the models layer.
MODEL_NAMES = ("selfie", "selfie_landscape", "pose_full", "modnet")


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
    local_workers: int = Field(
        0, ge=0, description="one-process engine: shard-processing threads (0 = one per core)"
    )

    # --- Ray DAG -------------------------------------------------------------------------------------------
    segmenter_gpus: str = Field("auto", description="GPU share per Segmenter: auto | 0 | <fraction>")
    segmenter_cpus: float = Field(0.5, gt=0, description="CPU share per Segmenter actor")
    pool_min: int = Field(2, ge=1, description="Segmenter pool: actors kept alive")
    pool_max: int = Field(8, ge=1, description="Segmenter pool: most actors")
    pool_shards_per_actor: int = Field(
        2, ge=1, description="pool growth rule: add an actor while queued shards exceed this per actor"
    )
    max_shards_in_flight: int = Field(4, ge=1, description="shards in flight per job (backpressure)")

    # --- client (`bgservice submit` / `bgservice jobs`) --------------------------------------------
    url: str = Field("http://127.0.0.1:8000", description="the service the client commands talk to")
    api_key: str | None = Field(None, description="the API key the client commands send", repr=False)

    # --- webhooks (bgservice/api/webhooks.py) ------------------------------------------------------------
    webhook_retry_schedule: str = Field(
        "5,60,600,3600", description="seconds between webhook attempts; the last repeats, up to 24 h"
    )

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _retry_schedule(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            seconds = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"must be comma-separated seconds, got {value!r}") from None
        if not seconds or any(s < 0 for s in seconds):
            raise ValueError(f"must be one or more non-negative numbers of seconds, got {value!r}")
        return ",".join(parts)
    # --- runner (bgservice.jobs.runner: claims queued jobs from the store, drives them on Ray) ----------
    job_timeout_seconds: float = Field(
        3600.0, gt=0, description="a job running longer fails with timeout, seconds"
    )
    max_running_jobs: int | None = Field(
        None, ge=1, description="jobs running at once (default: what the cluster's CPUs fit; 2 on 2 cores)"
    )
    max_running_jobs_per_key: int = Field(2, ge=1, description="jobs running at once per API key")
    job_lease_seconds: float = Field(
        30.0, gt=0, description="a running job's lease: a runner silent this long lost it (job re-queued)"
    )

    # --- job store (bgservice/jobs/store.py) -----------------------------------------------------------
    data_dir: Path = Field(
        default_factory=lambda: default_data_dir(),
        description="where the embedded SQLite job store lives (created 0700, files 0600)",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the job store (postgresql+psycopg://... for clusters; "
        "default: SQLite jobs.db under data_dir)",
    )
    secret: SecretStr | None = Field(
        None, description="signing secret shared by every replica (default: generated once, in the database)"
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        text = value.strip()
        scheme = text.split("://", 1)[0] if "://" in text else ""
        if not (scheme.startswith("sqlite") or scheme.startswith("postgres")):
            raise ValueError(f"must be a sqlite:/// or postgresql+psycopg:// URL, got {scheme or text!r}")
        return text

    # --- safe fetching (bgservice/io/fetch.py; README "Safe fetching") ----------------------------------
    # What the service may fetch for a stranger's videoUrl / imageUrl. The CLI and batch ignore these
    # except the timeout (their user owns the machine).
    allowed_input_prefixes: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="object-store URL prefixes the HTTP API may read (comma-separated; empty = none)"
    )
    allowed_private_nets: Annotated[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode] = (
        Field((), description="CIDRs exempt from the private-address rule (comma-separated; default none)")
    )
    allow_private_urls: bool = Field(
        False,
        description="true lifts the address rule entirely (local use only: reaches the private network)",
    )
    fetch_timeout_seconds: float = Field(
        60.0, gt=0, description="connect + total time allowed for one download, seconds"
    )

    @field_validator("allowed_input_prefixes", mode="before")
    @classmethod
    def _prefixes(cls, value: Any) -> tuple[str, ...]:
        items = _split_list(value)
        for item in items:
            protocol, sep, rest = item.partition("://")
            if not sep or "::" in item or not protocol.isalnum() or not rest.strip("/"):
                raise ValueError(f"{item!r} is not an object-store URL prefix such as s3://media-in/")
        return tuple(items)

    @field_validator("allowed_private_nets", mode="before")
    @classmethod
    def _nets(cls, value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        nets = []
        for item in _split_list(value):
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not a CIDR network (e.g. 10.20.0.0/16)") from None
        from ssrfguard import Policy  # the address guard refuses an entry that would switch it off

        Policy(allowed_networks=tuple(nets))
        return tuple(nets)

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODEL_NAMES:
            raise ValueError(f"unknown model {value!r}; known: {', '.join(MODEL_NAMES)}")
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

    # --- HTTP service (bgservice/api/; `bgservice serve`, serve_config.yaml) ----------------------------
    # API keys: comma-separated `name:key` or bare `key` entries; several keys under one name allow
    # rotation. Empty with the embedded SQLite store: one dev key is made, kept 0600 under the data dir.
    api_keys: SecretStr = Field(SecretStr(""), description="API keys: comma-separated name:key or key")
    rate_limit_per_minute: int = Field(
        60, ge=1, description="submissions per minute and API key (token bucket, burst = this quota)"
    )
    # Where results and uploaded assets live: a local directory (default: storage/ under the data dir)
    # or s3://bucket/prefix (s3fs; BGSERVICE_S3_ENDPOINT_URL for S3-compatible stores).
    storage_url: str | None = Field(None, description="storage root for results and assets")
    s3_endpoint_url: str | None = Field(None, description="endpoint of an S3-compatible store")
    retention_hours: float = Field(72.0, gt=0, description="results and assets are removed after this")
    url_ttl_seconds: int = Field(
        3600, ge=1, le=7 * 24 * 3600, description="lifetime of a result URL (at most 7 days)"
    )
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS (default none)")

    @field_validator("storage_url", "s3_endpoint_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/bgservice``, i.e. ``~/.local/share/bgservice`` when XDG_DATA_HOME is unset."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "bgservice"


def _split_list(value: Any) -> list[str]:
    """A comma-separated environment value (or a list, from code) as clean non-empty items."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [p.strip() for p in parts if str(p).strip()]


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
