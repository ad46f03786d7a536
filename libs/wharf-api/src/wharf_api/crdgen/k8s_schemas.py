"""Kubernetes' own OpenAPI definitions for the pinned minor, as shipped by `kubernetes-validate`.

The package is needed only to generate CRDs (it is in the workspace's dev group), so it is
located by path and never imported at run time.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

# Keep in step with the control plane the tests run against (e2e/cluster/k8s-binaries.sh).
KUBERNETES_MINOR = "1.34"


@cache
def load_k8s_definitions(minor: str = KUBERNETES_MINOR) -> dict[str, Any]:
    """Return `{definition name: JSON schema}` for Kubernetes `minor` (e.g. "1.34")."""
    root = files("kubernetes_validate").joinpath("kubernetes-json-schema")
    path = root.joinpath(f"v{minor}.0-local", "_definitions.json")
    if not path.is_file():
        raise FileNotFoundError(
            f"kubernetes-validate ships no schemas for Kubernetes {minor} (looked for {path})"
        )
    document: dict[str, Any] = json.loads(path.read_text())
    definitions: dict[str, Any] = document["$defs"]
    return definitions
