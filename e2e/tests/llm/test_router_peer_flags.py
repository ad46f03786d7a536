"""The controller's scheduler Deployment and the router agree: the command the controller renders
for an LLMInferenceService (with the peer exchange it adds) is parsed by the real
`wharf-router gateway` into the exchange it means: the listener, the token file, the pod's own
name, and the scheduler pods of its own service (by the Deployment's selector) as peers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wharf_api import load_documents
from wharf_api.config import InferenceServiceConfig
from wharf_controller.llm_render import parse_llm, parse_llm_config, render_llm_service
from wharf_router.gateway.cli import build, parser, peer_settings
from wharf_router.gateway.kube_endpoints import KubeEndpoints

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


def _scheduler() -> tuple[dict[str, Any], dict[str, Any]]:
    service = next(
        d for d in load_documents(EXAMPLES / "llm-pd.yaml") if d["kind"] == "LLMInferenceService"
    )
    service["metadata"]["namespace"] = "llm"
    configs = [parse_llm_config(d) for d in load_documents(EXAMPLES / "llm-config-cpu.yaml")]
    objects = render_llm_service(parse_llm(service), configs, InferenceServiceConfig())[2]
    deployment = next(
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-scheduler")
    )
    return deployment, deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_router_takes_the_controllers_peer_flags_as_meant(tmp_path: Path) -> None:
    deployment, main = _scheduler()
    argv = [*main.get("command", []), *main.get("args", [])]
    assert argv[:2] == ["wharf-router", "gateway"]
    # what the kubelet does: the token at its mount path, $(VAR) from the pod's env
    token_path = next(a for a in argv if a.endswith("/token"))
    token = tmp_path / "token"
    token.write_text("0123456789abcdef" * 4 + "\n")
    env = {e["name"]: e for e in main["env"]}
    assert env["WHARF_PEER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    argv = [
        str(token) if a == token_path else a.replace("$(WHARF_PEER_NAME)", "qwen-pd-sched-7c9f-x2")
        for a in argv[2:]
    ]
    args = parser().parse_args(argv)
    build(args)  # the engines' flags still hold together with the peers'
    peers = peer_settings(args)
    assert peers is not None
    assert peers.listen == ("0.0.0.0", 9090)
    assert peers.name == "qwen-pd-sched-7c9f-x2"
    assert peers.token == b"0123456789abcdef" * 4
    assert isinstance(peers.source, KubeEndpoints)
    selection = peers.source.selection
    assert selection.namespace == "llm" and selection.port == 9090
    wanted = deployment["spec"]["selector"]["matchLabels"]
    assert dict(kv.split("=", 1) for kv in selection.selector.split(",")) == wanted
    # the peer port is the container's `peer` port
    assert {"containerPort": 9090, "name": "peer", "protocol": "TCP"} in main["ports"]
