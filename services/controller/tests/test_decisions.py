"""The controller's pure decisions: when to apply, what to prune, what a config
change affects; and the status read from Deployments."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from wharf_controller.decisions import (
    affected_by_config,
    covers,
    needs_apply,
    to_prune,
)
from wharf_controller.status import deployment_ready, failed_status

sys.path.insert(0, str(Path(__file__).parent))
from controller_builders import deployment

DESIRED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "m", "namespace": "n", "labels": {"a": "b"}},
    "spec": {
        "template": {
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "0.5"}}}]}
        }
    },
}


def test_an_observed_object_with_server_defaults_needs_no_apply() -> None:
    observed: dict[str, Any] = {
        "metadata": {"name": "m", "namespace": "n", "labels": {"a": "b"}, "uid": "1"},
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "resources": {"limits": {"cpu": "500m"}},
                            "imagePullPolicy": "Always",
                        }
                    ]
                }
            },
        },
        "status": {"replicas": 1},
    }
    assert not needs_apply(DESIRED, observed)
    assert needs_apply(DESIRED, None)
    changed = {**observed, "metadata": {**observed["metadata"], "labels": {"a": "c"}}}
    assert needs_apply(DESIRED, changed)
    assert not covers([1, 2, 3], [1, 2])  # a list must match in length


def test_only_owned_children_no_longer_desired_are_pruned() -> None:
    def obj(kind: str, name: str, uid: str, controller: bool = True) -> dict[str, Any]:
        refs = [{"uid": uid, "controller": controller}]
        return {"kind": kind, "metadata": {"name": name, "namespace": "n", "ownerReferences": refs}}

    observed = [
        obj("Deployment", "m", "owner"),
        obj("PodDisruptionBudget", "m", "owner"),
        obj("PodDisruptionBudget", "other", "someone-else"),
        obj("Service", "shared", "owner", controller=False),
    ]
    pruned = to_prune(observed, [obj("Deployment", "m", "owner")], "owner")
    assert [(p["kind"], p["metadata"]["name"]) for p in pruned] == [("PodDisruptionBudget", "m")]


def test_a_config_change_affects_only_the_resources_it_renders_differently() -> None:
    resources = [{"name": "a", "uses": "image"}, {"name": "b", "uses": "domain"}, {"name": "c"}]

    def render(config: dict[str, str]) -> Any:
        def inner(res: Any) -> Any:
            if res.get("uses") is None:
                raise ValueError("cannot render")
            return config[res["uses"]]

        return inner

    old = {"image": "v1", "domain": "example.com"}
    new = {"image": "v2", "domain": "example.com"}
    affected = affected_by_config(resources, render(old), render(new))
    assert [r["name"] for r in affected] == ["a"]


def test_a_deployment_is_ready_when_its_current_generation_is_rolled_out() -> None:
    assert deployment_ready(deployment("d", replicas=2, available=2))
    assert not deployment_ready(deployment("d", replicas=2, available=0))
    assert not deployment_ready(deployment("d", replicas=2, available=2, generation=2, observed=1))
    assert not deployment_ready(None)


def test_a_failure_keeps_its_transition_time_while_it_lasts() -> None:
    first = failed_status("NoSupportingRuntime", "no runtime", 1, "t1", {}, "Standard")
    again = failed_status("NoSupportingRuntime", "no runtime", 2, "t2", first, "Standard")
    assert again["conditions"][0]["lastTransitionTime"] == "t1"
    assert again["observedGeneration"] == 2
