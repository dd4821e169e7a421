"""The actor classes as plain Python (no Ray running): reorder, Segmenter, decoder, encoder, pool, sizing."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bgservice.engines.ray import pool as pool_module
from bgservice.engines.ray.compositor import Compositor
from bgservice.engines.ray.decoder import Decoder
from bgservice.engines.ray.encoder import Encoder
from bgservice.engines.ray.pool import SegmenterPool, _Member
from bgservice.engines.ray.resources import (
    AUTO_GPU_SHARE,
    JOB_RESERVE_CPUS,
    autoscaler_has_gpu_node_types,
    can_grow,
    resolve_gpu_share,
    segmenter_options,
)
from bgservice.engines.ray.segmenter import Segmenter
from bgservice.engines.ray.types import Segment
from bgservice.errors import DecodeFailed, EncodeFailed, InternalError, InvalidInput
from bgservice.media.ffmpeg import ClipSpec, synth_clip
from bgservice.media.types import Shard
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from bgservice.storage import is_object_store_url
from tests.outputs import frames, inspect


# --- Compositor -------------------------------------------------------------------------------------------
def test_compositor_releases_strictly_in_order_whatever_the_arrival_order() -> None:
    order = list(range(50))
    random.Random(7).shuffle(order)
    comp: Compositor[int] = Compositor()
    released: list[int] = []
    for i in order:
        released += comp.add(i, i * 10)
        assert released == [j * 10 for j in range(len(released))]
    assert released == [j * 10 for j in range(50)]
    assert comp.held == 0 and comp.next_index == 50


def test_compositor_ignores_a_shard_reported_twice() -> None:
    comp: Compositor[str] = Compositor()
    assert comp.add(1, "b") == []
    assert comp.add(1, "b-again") == []
    assert comp.add(0, "a") == ["a", "b"]
    assert comp.add(0, "a-again") == []
    with pytest.raises(ValueError):
        comp.add(-1, "x")


# --- Segmenter --------------------------------------------------------------------------------------------
class FakeShardWork:
    """Stands in for the core's ShardProcessor: inverts the frames (the test is about the contract)."""

    context_before = 2
    context_after = 1

    def resolve_quality(self, requested: str | None) -> str:
        return requested or "fast"

    def __call__(self, shard: Shard, plate: np.ndarray, quality: str | None = None) -> np.ndarray:
        return np.asarray(255 - shard.frames, dtype=np.uint8)


def _shard(index: int, n: int, start: int = 0) -> Shard:
    frames = np.full((n, 4, 6, 3), index, np.uint8)
    empty = np.zeros((0, 4, 6, 3), np.uint8)
    return Shard(index, start, frames, np.arange(start, start + n, dtype=np.int64) * 512, empty, empty)


def test_segmenter_returns_a_small_status_and_the_frames_with_their_timestamps() -> None:
    seg = Segmenter(Settings(), work=FakeShardWork())
    info = seg.info()
    assert (info.context_before, info.context_after, info.shards_done) == (2, 1, 0)
    done, out = seg.process(_shard(3, 5, start=15), np.zeros((4, 6, 3), np.uint8))
    assert (done.index, done.frames, done.pid) == (3, 5, info.pid)
    assert (out.index, out.start) == (3, 15)
    assert (
        out.frames.dtype == np.uint8
        and out.frames.shape == (5, 4, 6, 3)
        and int(out.frames[0, 0, 0, 0]) == 252
    )
    np.testing.assert_array_equal(out.pts, np.arange(15, 20) * 512)
    # idempotent: the same shard twice gives the same frames (Ray may retry it on a restarted actor)
    np.testing.assert_array_equal(
        seg.process(_shard(3, 5, 15), np.zeros((4, 6, 3), np.uint8))[1].frames, out.frames
    )
    assert seg.info().shards_done == 2


def test_segmenter_with_the_real_core_composites_over_the_plate(tmp_path: Path) -> None:
    seg = Segmenter(Settings(tmp_dir=tmp_path))
    info = seg.info()
    assert info.context_before >= 0 and info.context_after >= 0
    rng = np.random.default_rng(0)
    frames_ = rng.integers(0, 255, (3, 72, 96, 3), dtype=np.uint8)
    empty = np.zeros((0, 72, 96, 3), np.uint8)
    plate = np.zeros((72, 96, 3), np.uint8)
    plate[..., 2] = 255
    _, out = seg.process(Shard(0, 0, frames_, np.arange(3, dtype=np.int64), empty, empty), plate)
    assert out.frames.shape == (3, 72, 96, 3) and out.frames.dtype == np.uint8


# --- Decoder and Encoder (real media) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("actors")
    return synth_clip(str(work / "clip.mp4"), ClipSpec(width=160, height=120, duration=1.2, rate="25"))


def _decode_all(decoder: Decoder) -> list[Shard]:
    shards = []
    while True:
        head, shard = decoder.next_shard()
        if head is None:
            assert shard is None
            return shards
        assert shard is not None and (head.index, head.start, head.frames) == (
            shard.index,
            shard.start,
            len(shard),
        )
        shards.append(shard)


def test_decoder_hands_out_consecutive_shards_and_is_reusable(clip: str, tmp_path: Path) -> None:
    settings = Settings(tmp_dir=tmp_path)
    decoder = Decoder()
    spec = JobSpec.build(clip, str(tmp_path / "out.mp4"), colour="#00ff00")
    media, backdrop = decoder.open(spec, settings, 7, 2, 2)
    assert media.total_frames == 30 and (media.info.out_width, media.info.out_height) == (160, 120)
    plate = backdrop.plate
    assert plate is not None and plate.shape == (120, 160, 3) and tuple(plate[0, 0]) == (0, 255, 0)
    shards = _decode_all(decoder)
    assert [s.index for s in shards] == [0, 1, 2, 3, 4]
    assert [s.start for s in shards] == [0, 7, 14, 21, 28]
    assert sum(len(s) for s in shards) == 30
    assert len(shards[0].before) == 0 and len(shards[1].before) == 2 and len(shards[-1].after) == 0
    assert decoder.next_shard() == (None, None)
    decoder.close()
    media2, _ = decoder.open(JobSpec.build(clip, str(tmp_path / "o.mp4"), end=0.4), settings, 64, 0, 0)
    assert media2.total_frames == 10 and [len(s) for s in _decode_all(decoder)] == [10]
    decoder.close()


def test_decoder_user_error_keeps_its_code(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"\0" * 1000)
    with pytest.raises(InvalidInput):
        Decoder().open(
            JobSpec.build(str(bogus), str(tmp_path / "o.mp4")), Settings(tmp_dir=tmp_path), 4, 0, 0
        )


def test_encoder_reorders_shards_and_publishes_only_on_finish(clip: str, tmp_path: Path) -> None:
    settings = Settings(tmp_dir=tmp_path / "scratch")
    out = tmp_path / "out.mp4"
    decoder = Decoder()
    spec = JobSpec.build(clip, str(out))
    media, _ = decoder.open(spec, settings, 4, 0, 0)
    segments = [Segment(s.index, s.start, s.frames, s.pts) for s in _decode_all(decoder)]
    source = [s.frames for s in segments]
    encoder = Encoder(resolve=lambda item: item)
    encoder.open(spec, media, settings)
    progress = None
    for seg in reversed(segments):  # worst case: the first shard finishes last
        progress = encoder.push(seg.index, [seg])
        assert not out.exists()
    assert progress is not None and (progress.shards_written, progress.frames_written) == (len(segments), 30)
    result = encoder.finish()
    decoder.close()
    assert result.frames == 30 and out.exists()
    facts = inspect(str(out))
    assert facts.frames == 30
    expected = np.concatenate(source)
    src = expected.astype(np.float32)
    for i, frame in enumerate(frames(str(out))):
        diffs = np.abs(src - frame.astype(np.float32)).mean(axis=(1, 2, 3))
        assert int(diffs.argmin()) == i, f"output frame {i} looks most like source frame {diffs.argmin()}"
    assert not any((tmp_path / "scratch").rglob("*.mp4"))


def test_encoder_abort_publishes_nothing_and_leaves_no_files(clip: str, tmp_path: Path) -> None:
    settings = Settings(tmp_dir=tmp_path / "scratch")
    out = tmp_path / "never.mp4"
    decoder = Decoder()
    spec = JobSpec.build(clip, str(out))
    media, _ = decoder.open(spec, settings, 8, 0, 0)
    encoder = Encoder(resolve=lambda item: item)
    encoder.open(spec, media, settings)
    _head, shard = decoder.next_shard()
    assert shard is not None
    encoder.push(0, [Segment(0, 0, shard.frames, shard.pts)])
    encoder.abort()
    decoder.close()
    assert not out.exists()
    assert not any((tmp_path / "scratch").rglob("*"))
    with pytest.raises(RuntimeError):
        encoder.finish()


# --- the pool's lease broker (members are fakes: the test is about who gets the next slot) ----------------
def test_pool_grants_free_slots_round_robin_between_jobs() -> None:
    async def scenario() -> list[str]:
        pool = SegmenterPool(Settings(pool_min=2, pool_max=2, pool_shards_per_actor=1))
        pool._started = True
        pool._ready_event = asyncio.Event()
        for key in (0, 1):
            pool._members[key] = _Member(key=key, handle=f"fake-segmenter-{key}", ready=True)
        granted: list[str] = []

        async def ask(job: str) -> None:
            lease = await pool.lease(job)
            assert lease is not None
            granted.append(job)
            await asyncio.sleep(0)

        long_tasks = [asyncio.create_task(ask("long")) for _ in range(6)]
        await asyncio.sleep(0)
        assert granted == ["long", "long"]  # both slots taken by the long job
        short_tasks = [asyncio.create_task(ask("short")) for _ in range(2)]
        await asyncio.sleep(0)
        for n in range(4):
            pool.release(n % 2, granted[n])
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        pool.forget_job("long")
        await asyncio.gather(*short_tasks)
        for t in long_tasks:
            t.cancel()
        return granted

    granted = asyncio.run(scenario())
    assert granted[2:6] == ["short", "long", "short", "long"], granted


def test_pool_forget_job_answers_waiting_requests_and_returns_held_leases() -> None:
    async def scenario() -> Any:
        pool = SegmenterPool(Settings(pool_min=1, pool_max=1, pool_shards_per_actor=1))
        pool._started = True
        pool._ready_event = asyncio.Event()
        pool._members[0] = _Member(key=0, handle="fake-segmenter", ready=True)
        first = await pool.lease("a")
        waiting = asyncio.create_task(pool.lease("a"))
        await asyncio.sleep(0)
        while_leased = pool.load()
        pool.forget_job("a")
        return first, await waiting, while_leased, pool.load()

    first, second, while_leased, load = asyncio.run(scenario())
    assert first == (0, "fake-segmenter") and second is None
    assert (while_leased["segmenters"], while_leased["busy"], while_leased["waiting"]) == (1, 1, 1)
    # and the lease it still held (e.g. granted while it was being cancelled) is back in the pool
    assert load["waiting"] == 0 and load["leased"] == 0 and load["busy"] == 0


def test_pool_stops_idle_segmenters_when_no_job_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle members above the minimum go after POOL_IDLE_SECONDS even with no lease released any more."""
    monkeypatch.setattr(pool_module, "POOL_IDLE_SECONDS", 0.05)
    stopped: list[Any] = []
    # The members are fakes, so stopping one is recorded instead of ray.kill (which would start a Ray
    # in this process and break the next module's own ray.init).
    monkeypatch.setattr(SegmenterPool, "_kill", staticmethod(lambda member: stopped.append(member.handle)))

    async def scenario() -> int:
        pool = SegmenterPool(Settings(pool_min=1, pool_max=3))
        pool._started = True
        for key in (0, 1, 2):
            pool._members[key] = _Member(key=key, handle=f"fake-segmenter-{key}", ready=True)
        shrinker = asyncio.create_task(pool._shrink_idle())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(pool._members) > 1 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        shrinker.cancel()
        return len(pool._members)

    assert asyncio.run(scenario()) == 1
    assert len(stopped) == 2


# --- sizing and GPU choice --------------------------------------------------------------------------------
def test_gpu_share_setting() -> None:
    assert resolve_gpu_share("auto", {"CPU": 2}, autoscaler_gpu=False) == 0
    assert resolve_gpu_share("auto", {"CPU": 8, "GPU": 1}, autoscaler_gpu=False) == AUTO_GPU_SHARE
    assert resolve_gpu_share("auto", {"CPU": 2}, autoscaler_gpu=True) == AUTO_GPU_SHARE
    assert resolve_gpu_share("0", {"GPU": 4}, autoscaler_gpu=True) == 0
    assert resolve_gpu_share("0.5", {}, autoscaler_gpu=False) == 0.5
    for bad in ("lots", "-1", "1.5"):
        with pytest.raises(ValueError):
            resolve_gpu_share(bad, {}, autoscaler_gpu=False)
    assert "num_gpus" not in segmenter_options(0.5, 0)
    opts = segmenter_options(0.5, 0.25)
    assert opts["num_gpus"] == 0.25 and opts["max_restarts"] == -1 and opts["max_task_retries"] > 0


def test_autoscaler_gpu_node_types_read_from_the_launcher_config(tmp_path: Path) -> None:
    cfg = tmp_path / "bootstrap.yaml"
    assert not autoscaler_has_gpu_node_types(cfg)
    cfg.write_text("available_node_types:\n  head: {resources: {CPU: 4}}\n")
    assert not autoscaler_has_gpu_node_types(cfg)
    cfg.write_text("available_node_types:\n  head: {resources: {}}\n  gpu: {resources: {CPU: 4, GPU: 1}}\n")
    assert autoscaler_has_gpu_node_types(cfg)
    assert autoscaler_has_gpu_node_types(Path(__file__).resolve().parents[1] / "cluster.yaml")


def test_pool_grows_only_beside_room_for_the_next_job() -> None:
    assert can_grow({"CPU": 0.5 + JOB_RESERVE_CPUS}, 0.5, 0, autoscaler_gpu=False)
    assert not can_grow({"CPU": 0.5}, 0.5, 0, autoscaler_gpu=False)
    assert not can_grow({"CPU": 4}, 0.5, 0.25, autoscaler_gpu=False)  # no GPU left
    assert can_grow({"CPU": 4, "GPU": 0.25}, 0.5, 0.25, autoscaler_gpu=False)
    assert can_grow({"CPU": 0}, 0.5, 0.25, autoscaler_gpu=True)  # pending asks the autoscaler for a node
    assert is_object_store_url("s3://b/k") and is_object_store_url("GS://b/k")
    assert not is_object_store_url("/tmp/x.mp4") and not is_object_store_url("memory://x")


def test_stage_errors_have_clear_codes() -> None:
    from ray.exceptions import ActorDiedError

    from bgservice.engines.ray.dag import stage_error

    assert isinstance(stage_error(ActorDiedError(), "decode"), DecodeFailed)
    assert isinstance(stage_error(ActorDiedError(), "encode"), EncodeFailed)
    assert isinstance(stage_error(InvalidInput("bad"), "decode"), InvalidInput)
    assert isinstance(stage_error(ValueError("x"), "segment"), InternalError)
