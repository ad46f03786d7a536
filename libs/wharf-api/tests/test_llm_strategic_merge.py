"""Specs merge as Kubernetes' strategic merge patch merges them on KServe's Go types."""

from __future__ import annotations

import pytest

from wharf_api.llm.strategic_merge import MergeError, merge_specs


def pod(*containers: dict[str, object], **fields: object) -> dict[str, object]:
    return {"template": {"containers": list(containers), **fields}}


def test_containers_merge_by_name_and_scalars_replace() -> None:
    base = pod({"name": "main", "image": "a", "command": ["x", "y"], "args": ["--a"]})
    over = pod({"name": "main", "args": ["--b"]})
    merged = merge_specs(base, over)
    assert merged["template"]["containers"] == [
        {"name": "main", "image": "a", "command": ["x", "y"], "args": ["--b"]}
    ]


def test_env_merges_by_name_and_new_entries_go_first() -> None:
    base = pod({"name": "main", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]})
    over = pod({"name": "main", "env": [{"name": "C", "value": "3"}, {"name": "B", "value": "9"}]})
    env = merge_specs(base, over)["template"]["containers"][0]["env"]
    # Kubernetes' mergeSortedSlice: C (new) is placed before A (base-only); B keeps its slot
    assert env == [
        {"name": "C", "value": "3"},
        {"name": "A", "value": "1"},
        {"name": "B", "value": "9"},
    ]


def test_new_container_goes_before_base_containers() -> None:
    merged = merge_specs(
        pod({"name": "main", "image": "a"}), pod({"name": "sidecar", "image": "s"})
    )
    assert [c["name"] for c in merged["template"]["containers"]] == ["sidecar", "main"]


def test_ports_merge_by_container_port_and_volumes_by_name() -> None:
    base = pod(
        {"name": "main", "ports": [{"containerPort": 8000, "protocol": "TCP"}]},
        volumes=[{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    )
    over = pod(
        {"name": "main", "ports": [{"containerPort": 8000, "name": "http"}]},
        volumes=[{"name": "dshm", "emptyDir": {"sizeLimit": "2Gi"}}],
    )
    merged = merge_specs(base, over)["template"]
    assert merged["containers"][0]["ports"] == [
        {"containerPort": 8000, "protocol": "TCP", "name": "http"}
    ]
    assert merged["volumes"] == [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    ]


def test_maps_merge_and_lists_without_a_strategy_replace() -> None:
    base = {
        "labels": {"a": "1"},
        "template": {"tolerations": [{"key": "x"}], "nodeSelector": {"gpu": "a100"}},
        "router": {"route": {"http": {"spec": {"rules": [{"name": "r1"}, {"name": "r2"}]}}}},
    }
    over = {
        "labels": {"b": "2"},
        "template": {"tolerations": [{"key": "y"}], "nodeSelector": {"zone": "z"}},
        "router": {"route": {"http": {"spec": {"rules": [{"name": "r3"}]}}}},
    }
    merged = merge_specs(base, over)
    assert merged["labels"] == {"a": "1", "b": "2"}
    assert merged["template"]["tolerations"] == [{"key": "y"}]
    assert merged["template"]["nodeSelector"] == {"gpu": "a100", "zone": "z"}
    assert merged["router"]["route"]["http"]["spec"]["rules"] == [{"name": "r3"}]


def test_prefill_and_worker_templates_merge_as_pod_specs() -> None:
    base = {"prefill": {"worker": {"containers": [{"name": "main", "image": "a"}]}}}
    over = {
        "prefill": {
            "worker": {"containers": [{"name": "main", "resources": {"limits": {"cpu": "2"}}}]}
        }
    }
    merged = merge_specs(base, over)
    assert merged["prefill"]["worker"]["containers"] == [
        {"name": "main", "image": "a", "resources": {"limits": {"cpu": "2"}}}
    ]


def test_patch_directives_do_not_survive() -> None:
    base = pod({"name": "main", "image": "a"})
    over = pod({"name": "main", "$patch": "delete"})
    assert merge_specs(base, over)["template"]["containers"] == [{"name": "main", "image": "a"}]


def test_an_item_without_its_merge_key_is_an_error() -> None:
    with pytest.raises(
        MergeError, match=r"spec\.template\.containers: every item needs its merge key 'name'"
    ):
        merge_specs(pod({"name": "main"}), pod({"image": "b"}))
