"""The Ray DAG on a real local Ray (2 CPUs, like a laptop): equal to the core, shared fairly, cancellable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bgservice.engines.local import run_job
from bgservice.engines.ray.dag import run_job_ray, submit, warm_up
from bgservice.engines.ray.pool import get_pool
from bgservice.errors import JobCancelled
from bgservice.media.ffmpeg import ClipSpec, synth_clip
from bgservice.spec import JobSpec
from tests.dagtools import TALKING_HEAD, dag_settings, local_ray, scratch_files, worst_frame_diff

pytestmark = pytest.mark.ray

END = 1.0  # seconds of the talking head: 30 frames, audio re-encoded (a trim)


@pytest.fixture(scope="module")
def ray_2cpu(s3_server: str) -> Iterator[None]:
    """Started after the module's moto S3 so that every Ray worker sees its endpoint."""
    with local_ray(num_cpus=2):
        yield


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dag")


@pytest.fixture(scope="module")
def talking_head(shared_data: Path) -> str:
    return str(shared_data / "videos" / TALKING_HEAD)


@pytest.fixture(scope="module")
def reference(talking_head: str, work: Path) -> str:
    """The one-process core's output: what the DAG must equal."""
    out = work / "reference.mp4"
    run_job(JobSpec.build(talking_head, str(out), colour="#1E90FF", end=END), dag_settings(work))
    return str(out)


@pytest.mark.parametrize("shard_frames", [1, 3, 64], ids=["1-frame", "under-temporal-window", "over-clip"])
def test_dag_equals_core(
    ray_2cpu: None, talking_head: str, reference: str, work: Path, shard_frames: int
) -> None:
    settings = dag_settings(work, shard_frames=shard_frames)
    seen: list[tuple[int, int]] = []
    out = work / f"dag-{shard_frames}.mp4"
    handle = submit(
        JobSpec.build(talking_head, str(out), colour="#1E90FF", end=END),
        settings,
        progress=lambda done, total: seen.append((done, total)),
    )
    result = handle.result(timeout=240)

    worst, n_dag, n_ref = worst_frame_diff(str(out), reference)
    assert n_dag == n_ref == result.frames == 30
    assert worst <= 0.5
    assert result.has_audio and (result.width, result.height) == (480, 360)
    assert result.quality == "fast"  # BGSERVICE_QUALITY=auto on Segmenters without CUDA
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and seen[-1] == (30, 30)
    if shard_frames < 30:
        assert len(handle.stats.segmenter_pids) >= 2, "a multi-shard job should use several Segmenters"
    assert scratch_files(settings) == []


def test_two_jobs_at_once_on_two_cpus(ray_2cpu: None, talking_head: str, reference: str, work: Path) -> None:
    import ray

    settings = dag_settings(work, shard_frames=4)
    outs = [work / f"pair-{i}.mp4" for i in range(2)]
    handles = [submit(JobSpec.build(talking_head, str(o), colour="#1E90FF", end=END), settings) for o in outs]
    lowest_cpu = 2.0
    while not all(h.wait(0.2) for h in handles):
        lowest_cpu = min(lowest_cpu, ray.available_resources().get("CPU", 0.0))
    for h, o in zip(handles, outs, strict=True):
        assert h.result().frames == 30
        assert worst_frame_diff(str(o), reference)[0] <= 0.5
    # pool (2 x 0.5) + two jobs' decoders and encoders leave room for a Serve replica
    assert lowest_cpu >= 0.35


def test_more_jobs_than_fit_wait_their_turn_instead_of_pending_forever(
    ray_2cpu: None, talking_head: str, work: Path
) -> None:
    """4 jobs on 2 CPUs: the pool (1 CPU) and 3 decoder/encoder pairs fit, the 4th takes a freed pair."""
    settings = dag_settings(work, shard_frames=8)
    outs = [work / f"many-{i}.mp4" for i in range(4)]
    handles = [submit(JobSpec.build(talking_head, str(o), end=0.5), settings) for o in outs]
    assert [h.result(timeout=240).frames for h in handles] == [15] * 4
    assert all(o.exists() for o in outs)


def test_short_job_is_not_starved_by_a_long_one(ray_2cpu: None, work: Path) -> None:
    from ray._private.test_utils import wait_for_condition

    long_clip = synth_clip(
        str(work / "long.mp4"), ClipSpec(width=320, height=240, duration=16, audio_codec=None)
    )
    short_clip = synth_clip(
        str(work / "short.mp4"), ClipSpec(width=320, height=240, duration=1, audio_codec=None)
    )
    settings = dag_settings(work, shard_frames=4)
    warm_up(settings, jobs=2)  # what a service does at start: job start-up is not what is measured here
    long_job = submit(JobSpec.build(long_clip, str(work / "long-out.mp4")), settings)
    wait_for_condition(lambda: long_job.progress()[0] >= 0.1 * max(long_job.progress()[1], 1), timeout=120)
    short_job = submit(JobSpec.build(short_clip, str(work / "short-out.mp4")), settings)
    short_job.result(timeout=120)
    done, total = long_job.progress()
    assert done < 0.5 * total, f"long job was at {done}/{total} when the short one finished"
    assert long_job.result(timeout=240).frames == total


def test_cancel_stops_work_and_returns_resources(ray_2cpu: None, work: Path) -> None:
    import ray
    from ray._private import state
    from ray._private.test_utils import wait_for_condition

    settings = dag_settings(work, shard_frames=2)
    pool = get_pool(settings)
    clip = synth_clip(str(work / "cancel.mp4"), ClipSpec(width=320, height=240, duration=8))
    out = work / "cancelled.mp4"
    handle = submit(JobSpec.build(clip, str(out)), settings)
    wait_for_condition(lambda: handle.progress()[0] > 0, timeout=120)
    handle.cancel()
    with pytest.raises(JobCancelled):
        handle.result(timeout=60)
    done, total = handle.progress()
    assert 0 < done < total
    assert not out.exists()
    assert scratch_files(settings) == []

    def returned() -> bool:
        load = ray.get(pool.load.remote())
        io_dead = all(
            state.actors(actor_id)["State"] == "DEAD"
            for actor_id in (handle.stats.decoder_actor_id, handle.stats.encoder_actor_id)
        )
        return bool(load["leased"] == 0 and load["waiting"] == 0 and io_dead)

    wait_for_condition(returned, timeout=30)
    # and the pool serves the next job
    assert run_job_ray(JobSpec.build(clip, str(out), end=0.5), settings).frames > 0
    assert out.exists()


def test_object_store_input_and_output(
    ray_2cpu: None, s3: str, talking_head: str, reference: str, work: Path
) -> None:
    """s3:// in and out: decoder and encoder may run anywhere; the key is written only when done."""
    import s3fs
    from ray._private.test_utils import wait_for_condition

    fs = s3fs.S3FileSystem()
    fs.put_file(talking_head, f"{s3}/in/head.flv")
    settings = dag_settings(work, shard_frames=8)
    result = run_job_ray(
        JobSpec.build(f"{s3}/in/head.flv", f"{s3}/out/head.mp4", colour="#1E90FF", end=END), settings
    )
    assert result.frames == 30
    local = work / "from-s3.mp4"
    fs.get_file(f"{s3}/out/head.mp4", str(local))
    assert worst_frame_diff(str(local), reference)[0] <= 0.5

    clip = synth_clip(str(work / "s3-long.mp4"), ClipSpec(width=320, height=240, duration=8))
    fs.put_file(clip, f"{s3}/in/long.mp4")
    handle = submit(JobSpec.build(f"{s3}/in/long.mp4", f"{s3}/out/never.mp4"), settings)
    wait_for_condition(lambda: handle.progress()[0] > 0, timeout=120)
    handle.cancel()
    with pytest.raises(JobCancelled):
        handle.result(timeout=60)
    fs.invalidate_cache()
    assert not fs.exists(f"{s3}/out/never.mp4")
    assert fs.ls(f"{s3}/out") == [f"{s3[5:]}/out/head.mp4"]
