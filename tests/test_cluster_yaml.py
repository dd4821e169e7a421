"""cluster.yaml is a real Ray cluster-launcher config: valid against Ray's schema, and says what we mean."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.safe_load(CLUSTER_YAML.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_valid_against_rays_cluster_schema(config: dict[str, Any]) -> None:
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)  # as written
    validate_config(prepare_config(copy.deepcopy(config)))  # as `ray up` sees it, provider defaults merged

    broken = copy.deepcopy(config)
    broken["available_node_types"]["worker.gpu.g5"]["min_wrokers"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_cpu_head_and_an_autoscaling_gpu_worker_type(config: dict[str, Any]) -> None:
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) > 0]
    assert len(gpu_types) == 1
    gpu = gpu_types[0]
    assert gpu["min_workers"] == 0 < gpu["max_workers"] <= config["max_workers"]
    assert gpu["node_config"]["InstanceType"].startswith(("g4dn.", "g5.", "g6.", "p3.", "p4d."))


def test_setup_installs_the_project_with_exactly_one_onnxruntime_per_node(config: dict[str, Any]) -> None:
    head = " ".join(config["setup_commands"] + config["head_setup_commands"])
    workers = " ".join(config["setup_commands"] + config["worker_setup_commands"])
    assert "studio-background[cpu]" in head and "[gpu]" not in head
    assert "studio-background[gpu]" in workers and "[cpu]" not in workers
    assert config["file_mounts"]["~/studio-background"] == "."


def test_segmenter_gpu_share_is_set_where_ray_starts(config: dict[str, Any]) -> None:
    worker = " ".join(config["worker_start_ray_commands"])
    head = " ".join(config["head_start_ray_commands"])
    for cmds in (worker, head):
        assert "BGSERVICE_SEGMENTER_GPUS=0.25" in cmds
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "serve deploy ~/studio-background/serve_config.yaml" in head


def test_serve_config_is_valid_for_serve_deploy() -> None:
    """serve_config.yaml (what the head deploys) validates against Serve's own schema, and its import
    path and arguments build the application."""
    import importlib

    from ray.serve.schema import ServeDeploySchema

    data = yaml.safe_load((CLUSTER_YAML.parent / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(data)
    (app,) = schema.applications
    assert app.route_prefix == "/"
    module, _, name = app.import_path.partition(":")
    builder = getattr(importlib.import_module(module), name)
    assert builder(app.args) is not None
    assert app.args["autoscaling_config"]["min_replicas"] >= 1
    env = (app.runtime_env or {})["env_vars"]
    assert env["BGSERVICE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["BGSERVICE_STORAGE_URL"].startswith("s3://")
    assert schema.http_options.request_timeout_s
