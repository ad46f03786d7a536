"""The runtimes `wharf up` loads are the ones deployed to clusters (deploy/base/runtimes)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEPLOYED = Path(__file__).parents[3] / "deploy" / "base" / "runtimes"


def test_packaged_runtimes_equal_the_deployed_ones() -> None:
    packaged = resources.files("wharf_local") / "builtin_runtimes"
    ours = {e.name: e.read_text() for e in packaged.iterdir() if e.name.endswith(".yaml")}
    deployed = {
        p.name: p.read_text() for p in DEPLOYED.glob("*.yaml") if p.name != "kustomization.yaml"
    }
    assert ours == deployed, "copy deploy/base/runtimes/*.yaml into wharf_local/builtin_runtimes"
