"""The model cache's pure decisions: which nodes a group holds, what each LocalModelNode lists,
which cache covers a storage URI, and the cache's status from the nodes'."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_controller.desired.model_cache import (
    DISABLE_ANNOTATION,
    NODE_GROUP_ANNOTATION,
    ModelCacheError,
    agent_objects,
    cached_pod_parts,
    covering_cache,
    desired_objects,
    group_nodes,
    local_model_nodes,
    read_cache,
)
from wharf_controller.model_cache_status import cache_status


def _node(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def _group(name: str, *terms: dict[str, Any], host: str | None = "/models") -> dict[str, Any]:
    pv: dict[str, Any] = {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}
    if host:
        pv["local"] = {"path": host}
    else:
        pv["nfs"] = {"server": "nfs.example", "path": "/export"}
    if terms:
        pv["nodeAffinity"] = {"required": {"nodeSelectorTerms": list(terms)}}
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LocalModelNodeGroup",
        "metadata": {"name": name},
        "spec": {
            "storageLimit": "10Gi",
            "persistentVolumeSpec": pv,
            "persistentVolumeClaimSpec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    }


def _cache(name: str, uri: str, *groups: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}"}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LocalModelNamespaceCache" if namespace else "LocalModelCache",
        "metadata": meta,
        "spec": {"sourceModelUri": uri, "nodeGroups": list(groups)},
    }


def _in(key: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": "In", "values": list(values)}]}


NODES = [_node("gpu-1", pool="gpu"), _node("gpu-2", pool="gpu"), _node("cpu-1", pool="cpu")]


def test_a_group_holds_the_nodes_its_volume_affinity_admits() -> None:
    assert group_nodes(_group("g", _in("pool", "gpu")), NODES) == ["gpu-1", "gpu-2"]
    # terms are ORed, expressions within a term ANDed
    either = _group(
        "g",
        _in("pool", "cpu"),
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-2"]}]},
    )
    assert group_nodes(either, NODES) == ["cpu-1", "gpu-2"]
    both = _group(
        "g",
        {
            "matchExpressions": [
                {"key": "pool", "operator": "Exists"},
                {"key": "pool", "operator": "NotIn", "values": ["gpu"]},
            ]
        },
    )
    assert group_nodes(both, NODES) == ["cpu-1"]
    # no affinity: any node; an empty term: none (as the scheduler)
    assert group_nodes(_group("g"), NODES) == ["cpu-1", "gpu-1", "gpu-2"]
    assert group_nodes(_group("g", {}), NODES) == []


def test_each_node_lists_every_cache_of_its_groups_once() -> None:
    groups = {"gpu": _group("gpu", _in("pool", "gpu")), "all": _group("all")}
    caches = [
        read_cache(_cache("llama", "hf://meta/llama", "gpu", "all")),
        read_cache(_cache("iris", "gs://b/iris", "all")),
        read_cache(_cache("mine", "s3://b/m", "gpu", namespace="team-a")),
    ]
    nodes = {
        n["metadata"]["name"]: n["spec"]["localModels"]
        for n in local_model_nodes(caches, groups, NODES)
    }
    assert sorted(nodes) == ["cpu-1", "gpu-1", "gpu-2"]
    names = [(m["modelName"], m.get("namespace")) for m in nodes["gpu-1"]]
    assert sorted(names) == [("iris", None), ("llama", None), ("mine", "team-a")]
    assert [m["modelName"] for m in nodes["cpu-1"]] == ["iris", "llama"]
    assert {m["nodeGroup"] for m in nodes["cpu-1"]} == {"all"}


def test_a_cache_of_a_missing_group_lists_nothing() -> None:
    assert local_model_nodes([read_cache(_cache("x", "gs://b/x", "nope"))], {}, NODES) == []


def test_the_older_singular_node_group_is_read() -> None:
    obj = _cache("x", "gs://b/x")
    obj["spec"] = {"sourceModelUri": "gs://b/x", "nodeGroup": "gpu"}
    assert read_cache(obj).node_groups == ("gpu",)


def test_a_cache_without_node_groups_is_refused_with_its_name() -> None:
    obj = _cache("x", "gs://b/x")
    with pytest.raises(ModelCacheError, match="LocalModelCache 'x'"):
        read_cache(obj)


def test_the_agent_mounts_a_host_folder_or_the_groups_claim() -> None:
    local = agent_objects(_group("gpu", _in("pool", "gpu")), namespace="wharf-system")
    assert [o["kind"] for o in local] == ["DaemonSet"]
    pod = local[0]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["hostPath"]["path"] == "/models"
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [_in("pool", "gpu")]
    }
    assert pod["containers"][0]["env"][0]["name"] == "NODE_NAME"
    nfs = agent_objects(_group("shared", host=None), namespace="wharf-system")
    kinds = [(o["kind"], o["metadata"]["name"]) for o in nfs]
    assert kinds == [
        ("PersistentVolume", "shared-wharf-system"),
        ("PersistentVolumeClaim", "shared"),
        ("DaemonSet", "wharf-model-agent-shared"),
    ]
    assert nfs[1]["spec"]["volumeName"] == "shared-wharf-system"
    assert nfs[2]["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "shared"
    }


def test_serving_volumes_go_to_each_namespace_that_uses_the_cache() -> None:
    objs = desired_objects(
        [
            _cache("llama", "hf://meta/llama", "gpu"),
            _cache("mine", "s3://b/m", "gpu", namespace="a"),
        ],
        [_group("gpu", _in("pool", "gpu"))],
        NODES,
        {"llama": ["a", "b"], "mine": ["a", "b"]},
        agent_namespace="wharf-system",
    )
    claims = sorted(
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objs
        if o["kind"] == "PersistentVolumeClaim"
    )
    # the namespace cache serves its own namespace only
    assert claims == [("a", "llama-gpu"), ("a", "mine-gpu"), ("b", "llama-gpu")]
    pvs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "PersistentVolume"}
    assert pvs["llama-gpu-b"]["spec"]["claimRef"] == {"namespace": "b", "name": "llama-gpu"}
    # a cluster-scoped PV can be owned by the cluster-scoped cache only
    assert pvs["llama-gpu-b"]["metadata"]["ownerReferences"][0]["kind"] == "LocalModelCache"
    assert "ownerReferences" not in pvs["mine-gpu-a"]["metadata"]


def test_the_covering_cache_is_a_prefix_match_namespace_first() -> None:
    groups = {"gpu": _group("gpu", _in("pool", "gpu")), "cpu": _group("cpu", _in("pool", "cpu"))}
    caches = [
        read_cache(_cache("llama", "hf://meta/llama", "gpu", "cpu")),
        read_cache(_cache("mine", "hf://meta/llama", "gpu", namespace="a")),
    ]
    got = covering_cache("hf://meta/llama/sub", "b", None, caches, groups)
    assert got is not None
    assert (got.cache.name, got.group, got.claim_name) == ("llama", "gpu", "llama-gpu")
    assert got.sub_path == "models/llama/sub"
    ns = covering_cache("hf://meta/llama", "a", None, caches, groups)
    assert ns is not None and ns.cache.name == "mine" and ns.sub_path == "models/mine"
    chosen = covering_cache("hf://meta/llama", "b", {NODE_GROUP_ANNOTATION: "cpu"}, caches, groups)
    assert chosen is not None and chosen.claim_name == "llama-cpu"
    assert covering_cache("hf://meta/llama2", "b", None, caches, groups) is None
    assert (
        covering_cache("hf://meta/llama", "b", {DISABLE_ANNOTATION: "true"}, caches, groups) is None
    )


def test_a_cached_pod_mounts_the_claim_read_only_on_the_groups_nodes() -> None:
    groups = {"gpu": _group("gpu", _in("pool", "gpu"))}
    model = covering_cache(
        "hf://meta/llama",
        "b",
        None,
        [read_cache(_cache("llama", "hf://meta/llama", "gpu"))],
        groups,
    )
    assert model is not None
    volume, mount, affinity = cached_pod_parts(model, "/mnt/models", "kserve-provision-location")
    assert volume["persistentVolumeClaim"] == {"claimName": "llama-gpu", "readOnly": True}
    assert mount == {
        "name": "kserve-provision-location",
        "mountPath": "/mnt/models",
        "readOnly": True,
        "subPath": "models/llama",
    }
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [_in("pool", "gpu")]


def test_status_counts_nodes_as_kserve_reports_them() -> None:
    cache = read_cache(_cache("llama", "hf://meta/llama", "gpu"))
    down = {
        "metadata": {"name": "n4"},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]},
    }
    nodes = {n: _node(n) for n in ("n1", "n2", "n3")} | {"n4": down}
    lmns = {
        "n1": {"status": {"modelStatus": {"llama": "ModelDownloaded"}}},
        "n2": {"status": {"modelStatus": {"llama": "ModelDownloadError"}}},
        "n3": {"status": {"modelStatus": {"other": "ModelDownloaded"}}},
    }
    status = cache_status(
        cache, ["n1", "n2", "n3", "n4"], nodes, lmns, [("b", "svc"), ("b", "svc")]
    )
    assert status["nodeStatus"] == {
        "n1": "NodeDownloaded",
        "n2": "NodeDownloadError",
        "n3": "NodeDownloadPending",
        "n4": "NodeNotReady",
    }
    assert status["copies"] == {"total": 4, "available": 1, "failed": 1}
    assert status["inferenceServices"] == [{"namespace": "b", "name": "svc"}]


def test_a_covered_predictor_mounts_the_cache_instead_of_downloading() -> None:
    from pathlib import Path

    from wharf_api import load_documents
    from wharf_controller.desired.model_cache import served_from_cache
    from wharf_controller.render import render_documents

    repo = Path(__file__).resolve().parents[3]
    runtimes = [
        d
        for p in sorted((repo / "deploy" / "base" / "runtimes").glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in load_documents(p)
    ]
    children = render_documents(
        [*runtimes, *load_documents(repo / "examples" / "sklearn-iris.yaml")], mode="Standard"
    )
    uri = next(d for d in load_documents(repo / "examples" / "sklearn-iris.yaml"))["spec"][
        "predictor"
    ]["model"]["storageUri"]
    groups = {"gpu": _group("gpu", _in("pool", "gpu"))}
    model = covering_cache(
        uri, "default", None, [read_cache(_cache("iris", uri.rsplit("/", 1)[0], "gpu"))], groups
    )
    assert model is not None
    served = served_from_cache(children, model)
    before = next(c for c in children if c["kind"] == "Deployment")
    assert "initContainers" in before["spec"]["template"]["spec"]  # it downloaded
    pod = next(c for c in served if c["kind"] == "Deployment")["spec"]["template"]
    assert "initContainers" not in pod["spec"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "kserve-provision-location")
    assert volume == {
        "name": "kserve-provision-location",
        "persistentVolumeClaim": {"claimName": "iris-gpu", "readOnly": True},
    }
    mount = next(
        m
        for m in pod["spec"]["containers"][0]["volumeMounts"]
        if m["name"] == "kserve-provision-location"
    )
    assert mount["subPath"] == "models/iris/" + uri.rsplit("/", 1)[1]
    assert mount["readOnly"] is True
    required = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert required["nodeSelectorTerms"] == [_in("pool", "gpu")]
    assert (
        pod["metadata"]["annotations"]["internal.serving.kserve.io/localmodel-pvc-name"]
        == "iris-gpu"
    )
    # the other children are untouched
    assert [c for c in served if c["kind"] != "Deployment"] == [
        c for c in children if c["kind"] != "Deployment"
    ]
