"""The DAG on a several-node ``ray.cluster_utils.Cluster`` on this machine: Segmenters go to the (test) GPU
nodes, and a GPU node removed mid-job does not lose the job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgservice.engines.local import run_job
from bgservice.engines.ray.dag import submit
from bgservice.engines.ray.pool import get_pool, shutdown_pool
from bgservice.engines.ray.resources import AUTO_GPU_SHARE, resolve_gpu_share
from bgservice.settings import Settings
from bgservice.spec import JobSpec
from tests.dagtools import REPO, TALKING_HEAD, dag_settings, worst_frame_diff

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, list[Any]]]:
    """A CPU head (the driver, decoders, encoders) and two worker nodes with one test "GPU" each."""
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    gpu_nodes = [c.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        yield c, gpu_nodes
    finally:
        try:
            shutdown_pool()
        finally:
            ray.shutdown()  # always disconnect before the cluster goes (see tests/dagtools.local_ray)
            c.shutdown()


def _segmenter_nodes(pool: Any) -> list[str]:
    import ray

    return [m.info.node_id for m in ray.get(pool.members.remote()) if m.info is not None]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return dag_settings(
        tmp_path_factory.mktemp("cluster"), segmenter_gpus="0.5", segmenter_cpus=0.5, shard_frames=2
    )


def test_segmenters_are_placed_on_the_gpu_nodes(cluster: tuple[Any, list[Any]], settings: Settings) -> None:
    import ray

    _, gpu_nodes = cluster
    assert resolve_gpu_share("auto", ray.cluster_resources(), autoscaler_gpu=False) == AUTO_GPU_SHARE
    pool = get_pool(settings)
    ray.get(pool.ready.remote())
    placed = _segmenter_nodes(pool)
    assert len(placed) == 2 and set(placed) <= {n.node_id for n in gpu_nodes}, "Segmenters go where GPUs are"


@pytest.mark.slow
def test_losing_a_node_that_hosts_segmenters_mid_job(
    cluster: tuple[Any, list[Any]], settings: Settings, shared_data: Path, tmp_path: Path
) -> None:
    import ray
    from ray._private.test_utils import wait_for_condition

    c, gpu_nodes = cluster
    pool = get_pool(settings)
    ray.get(pool.ready.remote())
    placed = _segmenter_nodes(pool)
    gpu_ids = {n.node_id for n in gpu_nodes}

    source = str(shared_data / "videos" / TALKING_HEAD)
    reference = tmp_path / "reference.mp4"
    run_job(JobSpec.build(source, str(reference), end=1.5), settings)

    out = tmp_path / "survived.mp4"
    handle = submit(JobSpec.build(source, str(out), end=1.5), settings)
    wait_for_condition(lambda: handle.progress()[0] > 0, timeout=180)
    busiest = max(set(placed), key=placed.count)
    victim = next(n for n in gpu_nodes if n.node_id == busiest)
    done, total = handle.progress()
    assert done < total, "the job ended before the node could be removed"
    c.remove_node(victim)
    result = handle.result(timeout=300)

    worst, n_dag, n_ref = worst_frame_diff(str(out), str(reference))
    assert n_dag == n_ref == result.frames == 45
    assert worst <= 0.5
    survivor = (gpu_ids - {busiest}).pop()
    wait_for_condition(lambda: set(_segmenter_nodes(pool)) == {survivor}, timeout=120)
