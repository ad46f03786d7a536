"""The router replicas' peer exchange as the controller turns it on (pure): the flags, port, env,
token volume and Secret of Wharf's router (and no NetworkPolicy); a user's own peer flags or another
scheduler image left alone; the same template for one replica or many."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from wharf_api import load_documents
from wharf_api.config import InferenceServiceConfig
from wharf_api.llm import LLMContainer, LLMPod
from wharf_controller.desired.llm_router_peers import (
    has_peer_flags,
    peer_exchange,
    runs_wharf_gateway,
)
from wharf_controller.llm_render import parse_llm, parse_llm_config, render_llm_service

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
JSON = dict[str, Any]
SCHEDULER_LABELS = {
    "app.kubernetes.io/component": "llminferenceservice-router-scheduler",
    "app.kubernetes.io/name": "qwen-pd",
    "app.kubernetes.io/part-of": "llminferenceservice",
}


def _example() -> JSON:
    doc = next(
        d for d in load_documents(EXAMPLES / "llm-pd.yaml") if d["kind"] == "LLMInferenceService"
    )
    doc["metadata"]["namespace"] = "llm"
    return doc


def _render(doc: JSON) -> dict[tuple[str, str], JSON]:
    configs = [parse_llm_config(d) for d in load_documents(EXAMPLES / "llm-config-cpu.yaml")]
    objects = render_llm_service(parse_llm(doc), configs, InferenceServiceConfig())[2]
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _router(by: dict[tuple[str, str], JSON]) -> JSON:
    deployment = by[("Deployment", "qwen-pd-kserve-router-scheduler")]
    return dict(deployment["spec"]["template"]["spec"])


def _argv(main: JSON) -> list[str]:
    return [*main.get("command", []), *main.get("args", [])]


def _value(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, (flag, argv)
    return argv[argv.index(flag) + 1]


def test_wharfs_router_gets_the_exchange_with_its_own_pods_as_peers() -> None:
    by = _render(_example())
    spec = _router(by)
    main = spec["containers"][0]
    argv = _argv(main)
    assert _value(argv, "--peer-listen") == "0.0.0.0:9090"
    # the selector is the Deployment's own: every scheduler pod of this service, and no other
    deployment = by[("Deployment", "qwen-pd-kserve-router-scheduler")]
    selector = dict(kv.split("=") for kv in _value(argv, "--peer-kube-selector").split(","))
    assert selector == deployment["spec"]["selector"]["matchLabels"] == SCHEDULER_LABELS
    assert _value(argv, "--kube-namespace") == "llm"
    assert _value(argv, "--peer-token-file") == "/var/run/wharf/peer-token/token"
    assert _value(argv, "--peer-name") == "$(WHARF_PEER_NAME)"
    # $(VAR) is expanded by Kubernetes from the pod's own name
    assert {
        "name": "WHARF_PEER_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    } in main["env"]
    assert {"containerPort": 9090, "name": "peer", "protocol": "TCP"} in main["ports"]
    mount = next(m for m in main["volumeMounts"] if m["name"] == "wharf-peer-token")
    assert mount == {
        "name": "wharf-peer-token",
        "mountPath": "/var/run/wharf/peer-token",
        "readOnly": True,
    }
    volume = next(v for v in spec["volumes"] if v["name"] == "wharf-peer-token")
    assert volume["secret"]["secretName"] == "qwen-pd-epp-peer-token"
    assert volume["secret"]["items"] == [{"key": "token", "path": "token"}]
    # the public port and the Service are as they were
    service = by[("Service", "qwen-pd-epp-service")]
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]
    assert _value(argv, "--port") == "8080"


def test_the_token_secret_carries_no_token_and_no_network_policy_is_made() -> None:
    by = _render(_example())
    secret = by[("Secret", "qwen-pd-epp-peer-token")]
    # the token is drawn by the controller when it creates the Secret, never rendered
    assert "data" not in secret and "stringData" not in secret
    assert secret["immutable"] is True
    assert secret["metadata"]["labels"]["app.kubernetes.io/name"] == "qwen-pd"
    # a policy selecting the scheduler pods would isolate them and, added to the namespace's
    # own policies, open their http port to the cluster: who reaches them is the admin's call
    assert "NetworkPolicy" not in {k for k, _ in by}


def test_owned_children_carry_the_owner_reference() -> None:
    configs = [parse_llm_config(d) for d in load_documents(EXAMPLES / "llm-config-cpu.yaml")]
    owner = {"apiVersion": "x", "kind": "LLMInferenceService", "name": "qwen-pd", "uid": "u1"}
    objects = render_llm_service(
        parse_llm(_example()), configs, InferenceServiceConfig(), owner=owner
    )[2]
    secret = next(o for o in objects if o["kind"] == "Secret")
    assert secret["metadata"]["ownerReferences"] == [owner]


@pytest.mark.parametrize("replicas", [None, 1, 3])
def test_one_replica_or_many_get_the_same_template(replicas: int | None) -> None:
    """On for every scheduler: a Deployment scaled later (by hand, an autoscaler) finds its
    peers without a new template, and scaling 1 -> 3 in the spec restarts no pod."""
    base = _router(_render(_example()))
    doc = _example()
    if replicas is not None:
        doc["spec"]["router"]["scheduler"] = {"replicas": replicas}
    by = _render(doc)
    assert _router(by) == base
    assert ("Secret", "qwen-pd-epp-peer-token") in by
    deployment = by[("Deployment", "qwen-pd-kserve-router-scheduler")]
    assert deployment["spec"]["replicas"] == (replicas or 1)


def _template(command: list[str], args: list[str] | None = None) -> JSON:
    main: JSON = {"name": "main", "image": "example.com/router:1", "command": command}
    if args is not None:
        main["args"] = args
    main["ports"] = [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    return {"containers": [main]}


def test_a_users_own_peer_flags_are_left_alone() -> None:
    doc = _example()
    own = ["wharf-router", "gateway", "--port", "8080", "--kube-selector", "app=x",
           "--kube-namespace", "llm", "--peer", "http://gw-b:7000",
           "--peer-listen", "0.0.0.0:7000", "--peer-token-file", "/etc/mine/token"]  # fmt: skip
    doc["spec"]["router"]["scheduler"] = {"template": _template(copy.copy(own))}
    by = _render(doc)
    main = _router(by)["containers"][0]
    assert _argv(main) == own
    assert all(p.get("name") != "peer" for p in main["ports"])
    assert "env" not in main and "volumes" not in _router(by)
    kinds = {k for k, _ in by}
    assert "NetworkPolicy" not in kinds and "Secret" not in kinds


def test_another_scheduler_is_left_alone() -> None:
    doc = _example()
    epp = ["/app/epp", "--pool-name", "qwen-pd-inference-pool"]
    doc["spec"]["router"]["scheduler"] = {"template": _template(epp)}
    by = _render(doc)
    assert _argv(_router(by)["containers"][0]) == epp
    assert not {k for k, _ in by} & {"NetworkPolicy", "Secret"}


def test_flags_follow_the_users_args_and_a_taken_port_moves_the_listener() -> None:
    doc = _example()
    template = _template(
        ["/usr/local/bin/wharf-router"],
        ["gateway", "--port", "8080", "--kube-selector", "app=x"],
    )
    # the pod already declares 9090 (a sidecar of the user's), and names it `peer`
    template["containers"].append(
        {
            "name": "sidecar",
            "image": "example.com/s:1",
            "ports": [{"containerPort": 9090, "name": "peer"}],
        }
    )
    doc["spec"]["router"]["scheduler"] = {"template": template}
    by = _render(doc)
    main = _router(by)["containers"][0]
    assert main["command"] == ["/usr/local/bin/wharf-router"]
    assert _value(main["args"], "--peer-listen") == "0.0.0.0:9091"
    # the sidecar's port is named `peer`: port names are unique in a pod
    assert {"containerPort": 9091, "name": "wharf-peer", "protocol": "TCP"} in main["ports"]
    # without --kube-namespace of its own, the service's namespace is added for the selector
    assert _value(main["args"], "--kube-namespace") == "llm"


def _pod(*argv: str) -> LLMPod:
    main = LLMContainer(name="main", image="i", command=tuple(argv), args=())
    return LLMPod(containers=(main,))


def test_what_counts_as_wharfs_router_and_as_the_users_peer_flags() -> None:
    assert runs_wharf_gateway(_pod("wharf-router", "gateway").main)
    assert runs_wharf_gateway(_pod("/opt/bin/wharf-router", "gateway").main)
    assert not runs_wharf_gateway(_pod("wharf-router", "graph").main)
    assert not runs_wharf_gateway(_pod("wharf-router-fork", "gateway").main)
    assert not runs_wharf_gateway(_pod("wharf-router").main)
    for flags in (["--peer", "http://a:1"], ["--peer=http://a:1"], ["--peer-listen", "x:1"],
                  ["--peer-kube-selector", "a=b"], ["--peer-token-file", "/t"],
                  ["--peer-name", "a"]):  # fmt: skip
        assert has_peer_flags(["gateway", *flags]), flags
    assert not has_peer_flags(["gateway", "--port", "8080", "--kube-selector", "peer=x"])
    # a config file without --kube-namespace: the flag would override the file's namespace
    assert peer_exchange(_pod("wharf-router", "gateway", "--config", "/c.yaml"), "x", 8080) is None
    assert peer_exchange(
        _pod("wharf-router", "gateway", "--config", "/c.yaml", "--kube-namespace", "n"), "x", 8080
    ) == peer_exchange(_pod("wharf-router", "gateway"), "x", 8080)
