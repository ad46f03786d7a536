"""What `wharf up` runs for an InferenceGraph, pure: resolved steps, router args, Ready, hosts."""

from __future__ import annotations

import json

from wharf_api.plan import ComponentPlan, ContainerPlan, ScalingPlan, ServicePlan
from wharf_api.resources.inference_graph import InferenceGraphSpec
from wharf_local.graph_plan import (
    ROUTER_CRASHED,
    ROUTER_STARTING,
    SERVICE_NOT_FOUND,
    graph_ready,
    resolve_graph,
    router_args,
)
from wharf_local.routing import GRAPH, host_table, route

INGRESS = "http://127.0.0.1:8080"


def plan(name: str, protocol: str, model: str = "") -> ServicePlan:
    """A service's plan as far as graph resolution reads it: entry protocol, model name."""
    comp = ComponentPlan(
        component="predictor",
        service_name=f"{name}-predictor",
        container=ContainerPlan(name="kserve-container", image="img", command=(), args=()),
        protocol=protocol,
        scaling=ScalingPlan(min_replicas=1, max_replicas=1, metric="cpu", target=80),
        http_port=8080,
        grpc_port=None,
    )
    return ServicePlan(
        "InferenceService", name, "ns1", f"{name}.example", (comp,), model_name=model
    )


def spec() -> InferenceGraphSpec:
    return InferenceGraphSpec.model_validate(
        {
            "nodes": {
                "root": {
                    "routerType": "Sequence",
                    "steps": [
                        {"serviceName": "iris"},
                        {"serviceName": "xgb", "data": "$request"},
                        {"serviceUrl": "http://elsewhere/v1/models/m:predict"},
                        {"nodeName": "more"},
                    ],
                },
                "more": {"routerType": "Ensemble", "steps": [{"serviceName": "ghost"}]},
            }
        }
    )


def test_service_names_resolve_to_the_ingress_path_in_the_services_protocol() -> None:
    resolved = resolve_graph(
        spec(),
        "ns1",
        {
            "iris": plan("iris", "v1"),
            "xgb": plan("xgb", "v2", "xgboost"),
            "ghost": plan("ghost", "v1"),
        },
        INGRESS,
    )
    assert resolved.missing == ()
    steps = json.loads(resolved.graph_json)["nodes"]["root"]["steps"]
    assert steps[0]["serviceUrl"] == f"{INGRESS}/serving/ns1/iris/v1/models/iris:predict"
    assert steps[1]["serviceUrl"] == f"{INGRESS}/serving/ns1/xgb/v2/models/xgboost/infer"
    assert steps[2]["serviceUrl"] == "http://elsewhere/v1/models/m:predict"
    assert steps[1]["data"] == "$request"
    assert "nodeName" in steps[3]


def test_services_not_applied_are_missing() -> None:
    resolved = resolve_graph(spec(), "ns1", {"iris": plan("iris", "v1")}, INGRESS)
    assert resolved.missing == ("ghost", "xgb")


def test_router_args_use_kserves_flags_and_the_local_ingress() -> None:
    args = router_args('{"nodes": {}}', 9000, "ns1", INGRESS)
    assert args[:4] == ["--graph-json", '{"nodes": {}}', "--port", "9000"]
    assert (
        "--service-resolution" in args and args[args.index("--service-resolution") + 1] == "local"
    )
    assert args[args.index("--ingress") + 1] == INGRESS


def test_ready_needs_every_service_and_a_ready_router() -> None:
    missing = graph_ready(("xgb",), True, None)
    assert (missing.status, missing.reason) == ("False", SERVICE_NOT_FOUND)
    assert "xgb" in (missing.message or "")
    assert graph_ready((), True, None).status == "True"
    assert graph_ready((), False, None).reason == ROUTER_STARTING
    assert graph_ready((), False, "exited with code 2").reason == ROUTER_CRASHED


def test_graphs_get_a_host_and_a_path_and_services_keep_theirs() -> None:
    table = host_table(
        [("default", "iris", ["predictor"])],
        "example.com",
        graphs=[("default", "chain"), ("default", "iris")],
    )
    by_host = route("chain-default.example.com", "/", table)
    assert by_host is not None and by_host.component == GRAPH and by_host.name == "chain"
    by_path = route(None, "/serving/default/chain/v1/models/x:predict", table)
    assert by_path is not None and by_path.component == GRAPH
    assert by_path.path == "/v1/models/x:predict"
    # an InferenceService of the same name keeps the host
    same = route("iris-default.example.com", "/", table)
    assert same is not None and same.component is None
