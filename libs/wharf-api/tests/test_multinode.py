"""A multi-node predictor's sizes, shared environment, worker container and worker pod follow
KServe's rules, from the service's workerSpec and the selected runtime's."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api import default, parse_object
from wharf_api.multinode import (
    MultiNodeError,
    head_service,
    multinode_env,
    parallel_sizes,
    runtime_worker_spec,
    worker_container,
    worker_pod_fields,
)
from wharf_api.plan import ComponentPlan, ContainerPlan, plan_inference_service
from wharf_api.resources import ClusterServingRuntime, InferenceService

MODEL = {"modelFormat": {"name": "huggingface"}, "storageUri": "hf://org/model"}
RUNTIME_WORKER: dict[str, Any] = {
    "pipelineParallelSize": 3,
    "tensorParallelSize": 2,
    "containers": [
        {
            "name": "worker-container",
            "image": "runtime-worker:1",
            "env": [{"name": "A", "value": "runtime"}, {"name": "B", "value": "runtime"}],
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
        }
    ],
    "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
}


def runtime(worker_spec: dict[str, Any] | None = RUNTIME_WORKER) -> ClusterServingRuntime:
    spec: dict[str, Any] = {
        "supportedModelFormats": [{"name": "huggingface", "autoSelect": True}],
        "containers": [{"name": "kserve-container", "image": "server:1"}],
    }
    if worker_spec is not None:
        spec["workerSpec"] = worker_spec
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ClusterServingRuntime",
            "metadata": {"name": "multinode"},
            "spec": spec,
        }
    )
    assert isinstance(obj, ClusterServingRuntime)
    return obj


def predictor(worker_spec: dict[str, Any], rt: ClusterServingRuntime) -> ComponentPlan:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "llama", "namespace": "team"},
            "spec": {"predictor": {"model": MODEL, "workerSpec": worker_spec}},
        }
    )
    assert isinstance(obj, InferenceService)
    return plan_inference_service(default(obj), cluster_runtimes=[rt]).components[0]


def render(c: ContainerPlan) -> dict[str, Any]:
    """A stand-in for the caller's rendering: what a pod spec would hold."""
    out: dict[str, Any] = {"name": c.name, "image": c.image, "resources": c.resources or {}}
    if c.env:
        out["env"] = [{"name": k, "value": v} for k, v in c.env]
    out["ports"] = [{"containerPort": 8080}]
    return out


def test_the_selected_runtimes_worker_spec_is_found() -> None:
    rt = runtime()
    comp = predictor({}, rt)
    found = runtime_worker_spec(comp, [], [rt])
    assert found is not None and found["pipelineParallelSize"] == 3
    assert runtime_worker_spec(comp, [], []) is None  # the runtime is not in the pool


def test_sizes_come_from_the_service_then_the_runtime_then_one() -> None:
    rt = runtime()
    own = predictor({"pipelineParallelSize": 2}, rt)
    assert parallel_sizes(own.worker, RUNTIME_WORKER) == (2, 2)
    assert parallel_sizes(own.worker, None) == (1, 2)
    assert parallel_sizes(None, None) == (1, 1)


def test_leader_and_workers_share_the_head_and_the_sizes() -> None:
    assert head_service("llama-predictor") == "llama-predictor-0.llama-predictor-0"
    assert dict(multinode_env("llama-predictor", 2, 3)) == {
        "TENSOR_PARALLEL_SIZE": "2",
        "PIPELINE_PARALLEL_SIZE": "3",
        "HEAD_SVC": "llama-predictor-0.llama-predictor-0",
    }


def test_without_a_container_of_its_own_the_worker_is_the_runtimes() -> None:
    comp = predictor({}, runtime())
    assert (
        worker_container("predictor", comp.worker, RUNTIME_WORKER, render)
        == (RUNTIME_WORKER["containers"][0])
    )


def test_the_services_container_goes_over_the_runtimes() -> None:
    comp = predictor(
        {"containers": [{"name": "worker-container", "env": [{"name": "B", "value": "mine"}]}]},
        runtime(),
    )
    out = worker_container("predictor", comp.worker, RUNTIME_WORKER, render)
    assert out["image"] == "runtime-worker:1"  # the service gave none
    assert {e["name"]: e["value"] for e in out["env"]} == {"A": "runtime", "B": "mine"}
    assert out["resources"] == {"limits": {"nvidia.com/gpu": "1"}}  # the service gave none
    assert "ports" not in out


def test_the_services_own_image_and_resources_win() -> None:
    mine = {"name": "w", "image": "mine:2", "resources": {"limits": {"cpu": "4"}}}
    comp = predictor({"containers": [mine]}, runtime())
    out = worker_container("predictor", comp.worker, RUNTIME_WORKER, render)
    assert (out["name"], out["image"], out["resources"]) == (
        "w",
        "mine:2",
        {"limits": {"cpu": "4"}},
    )


def test_no_image_anywhere_names_the_field() -> None:
    comp = predictor({}, runtime({"pipelineParallelSize": 2}))  # a runtime worker, no image
    with pytest.raises(MultiNodeError, match=r"spec\.predictor\.workerSpec: no worker container"):
        worker_container("predictor", comp.worker, None, render)


def test_the_worker_pod_takes_the_runtimes_volumes_then_the_services() -> None:
    comp = predictor(
        {
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
            "volumes": [{"name": "cache", "emptyDir": {}}],
        },
        runtime(),
    )
    assert comp.worker is not None
    fields = worker_pod_fields(comp.worker, RUNTIME_WORKER)
    assert fields["nodeSelector"] == {"pool": "gpu"}
    assert fields["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert [v["name"] for v in fields["volumes"]] == ["shm", "cache"]
    bare = predictor({}, runtime()).worker
    assert bare is not None and worker_pod_fields(bare, None) == {}
