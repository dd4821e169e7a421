"""Faults on a real local Ray: a Segmenter SIGKILLed mid-job, the decoder or encoder process lost."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgservice.engines.local import run_job
from bgservice.engines.ray.dag import JobHandle, run_job_ray, submit
from bgservice.engines.ray.pool import get_pool
from bgservice.errors import DecodeFailed, EncodeFailed, InvalidInput
from bgservice.media.ffmpeg import ClipSpec, synth_clip
from bgservice.spec import JobSpec
from tests.dagtools import TALKING_HEAD, dag_settings, local_ray, scratch_files, worst_frame_diff

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_2cpu() -> Iterator[None]:
    with local_ray(num_cpus=2):
        yield


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def clip(work: Path) -> str:
    """8 s of 320x240 at 25 fps with audio: long enough to be hit mid-job."""
    return synth_clip(str(work / "clip.mp4"), ClipSpec(width=320, height=240, duration=8))


def _pid(actor_id: str) -> int:
    from ray._private import state

    return int(state.actors(actor_id)["Pid"])


def _kill(pid: int, actor: str) -> None:
    """SIGKILL the process of a Ray actor, after checking that ``pid`` really is one (``ray::<actor>`` in
    its command line): a stale or reused pid must never take down another process (the GCS, the test
    run itself)."""
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    assert pid > 1 and f"ray::{actor}" in cmdline, f"pid {pid} is not a ray::{actor}: {cmdline[:200]!r}"
    os.kill(pid, signal.SIGKILL)


def _running(handle: JobHandle) -> None:
    from ray._private.test_utils import wait_for_condition

    wait_for_condition(lambda: handle.progress()[0] > 0, timeout=120)
    done, total = handle.progress()
    assert done < total, "the job ended before the fault could be injected"


def test_segmenter_sigkilled_mid_job(ray_2cpu: None, shared_data: Path, work: Path) -> None:
    import ray
    from ray._private import state

    source = str(shared_data / "videos" / TALKING_HEAD)
    settings = dag_settings(work, shard_frames=2)
    reference = work / "reference.mp4"
    run_job(JobSpec.build(source, str(reference)), settings)

    pool = get_pool(settings)
    ray.get(pool.ready.remote())
    out = work / "survived.mp4"
    handle = submit(JobSpec.build(source, str(out)), settings)
    _running(handle)
    busy = [m for m in ray.get(pool.members.remote()) if m.outstanding > 0 and m.info is not None]
    victim = busy[0] if busy else ray.get(pool.members.remote())[0]
    restarts_before = state.actors(victim.actor_id)["NumRestarts"]
    _kill(victim.info.pid, "Segmenter")

    result = handle.result(timeout=240)
    worst, n_dag, n_ref = worst_frame_diff(str(out), str(reference))
    assert n_dag == n_ref == result.frames
    assert worst <= 0.5
    assert state.actors(victim.actor_id)["NumRestarts"] > restarts_before


def test_decoder_lost_fails_with_decode_failed_and_next_job_runs(
    ray_2cpu: None, clip: str, work: Path
) -> None:
    settings = dag_settings(work, shard_frames=2)
    out = work / "decoder-lost.mp4"
    handle = submit(JobSpec.build(clip, str(out)), settings)
    _running(handle)
    _kill(_pid(handle.stats.decoder_actor_id), "Decoder")
    with pytest.raises(DecodeFailed) as err:
        handle.result(timeout=120)
    assert err.value.code == "decode_failed"
    assert not out.exists()
    assert run_job_ray(JobSpec.build(clip, str(out), end=1), settings).frames == 25
    assert scratch_files(settings) == []


def test_encoder_lost_fails_with_encode_failed_and_nothing_published(
    ray_2cpu: None, clip: str, work: Path
) -> None:
    settings = dag_settings(work, shard_frames=2)
    out = work / "encoder-lost.mp4"
    handle = submit(JobSpec.build(clip, str(out)), settings)
    _running(handle)
    _kill(_pid(handle.stats.encoder_actor_id), "Encoder")
    with pytest.raises(EncodeFailed) as err:
        handle.result(timeout=120)
    assert err.value.code == "encode_failed"
    assert not out.exists()
    assert list(work.glob(".encoder-lost*")) == []  # no partial file beside the output either
    assert run_job_ray(JobSpec.build(clip, str(out), end=1), settings).frames == 25


def test_user_error_in_the_decoder_keeps_its_code(ray_2cpu: None, work: Path) -> None:
    bogus = work / "not-a-video.mp4"
    bogus.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InvalidInput):
        run_job_ray(JobSpec.build(str(bogus), str(work / "never.mp4")), dag_settings(work))
    assert not (work / "never.mp4").exists()


def test_pool_manager_lost_mid_job(ray_2cpu: None, clip: str, work: Path) -> None:
    """The detached pool manager is restarted by Ray (its Segmenters with it); the job re-asks for leases."""
    import ray
    from ray._private import state

    settings = dag_settings(work, shard_frames=4)
    reference = work / "pool-lost-reference.mp4"
    run_job(JobSpec.build(clip, str(reference), end=4), settings)
    pool = get_pool(settings)
    ray.get(pool.ready.remote())
    out = work / "pool-lost.mp4"
    handle = submit(JobSpec.build(clip, str(out), end=4), settings)
    _running(handle)
    pool_id = pool._actor_id.hex()
    _kill(int(state.actors(pool_id)["Pid"]), "SegmenterPool")
    result = handle.result(timeout=240)
    worst, n_dag, n_ref = worst_frame_diff(str(out), str(reference))
    assert n_dag == n_ref == result.frames == 100
    assert worst <= 0.5
    assert state.actors(pool_id)["NumRestarts"] >= 1
