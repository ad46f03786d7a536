"""The LLM plan and the gateway cannot drift apart: every router container in the golden plans
(`libs/wharf-api/tests/golden/llm`) and in the controller's rendered objects
(`services/controller/tests/golden/llm`) parses with `wharf-router gateway`'s own parser and
builds its settings and endpoint source, as the container would at start (nothing connects)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_router.gateway.cli import build, parser
from wharf_router.gateway.kube_endpoints import KubeEndpoints

REPO = Path(__file__).resolve().parents[4]
GOLDEN = (
    REPO / "libs/wharf-api/tests/golden/llm",
    REPO / "services/controller/tests/golden/llm",
)


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        command = node.get("command")
        if isinstance(command, list) and command[:2] == ["wharf-router", "gateway"]:
            yield node
        for value in node.values():
            yield from _containers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _containers(value)


def _cases() -> list[Any]:
    out = []
    for folder in GOLDEN:
        for path in sorted(folder.glob("*.yaml")):
            for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
                for j, container in enumerate(_containers(doc)):
                    argv = [*container["command"][2:], *(container.get("args") or [])]
                    rel = path.relative_to(REPO)
                    out.append(pytest.param(argv, id=f"{rel}:{i}:{j}"))
    return out


CASES = _cases()


def test_the_golden_plans_have_router_containers() -> None:
    # the scheduler preset is in most examples: an empty list would make the contract vacuous
    assert len(CASES) >= 10


@pytest.mark.parametrize("argv", CASES)
def test_every_router_container_starts_the_gateway(argv: list[str]) -> None:
    assert not any("{{" in a for a in argv), f"an unrendered template in {argv}"
    args = parser().parse_args(argv)  # argparse exits (status 2) on a flag the gateway lacks
    config, source, keys = build(args)
    # the plan's router finds the workload pods through the Kubernetes API
    assert isinstance(source, KubeEndpoints)
    selection = source.selection
    assert selection.namespace and selection.selector
    for term in selection.selector.split(","):
        key, eq, value = term.partition("=")
        assert key and eq and value, f"not a key=value selector term: {term!r}"
    assert selection.port and selection.role_label == "llm-d.ai/role"
    assert keys is None and config.weights is not None


def test_an_inline_scheduler_config_reaches_the_gateways_weights() -> None:
    inline = [c for c in CASES if "--weights" in c.values[0]]
    assert inline, "the inline-config fixture's router has no --weights"
    for case in inline:
        config, _, _ = build(parser().parse_args(case.values[0]))
        weights = config.weights
        assert (weights.prefix, weights.queue, weights.active, weights.kv, weights.session) == (
            5.0,
            1.0,
            0.0,
            1.0,
            0.0,
        )
