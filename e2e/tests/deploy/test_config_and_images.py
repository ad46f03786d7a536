"""The shipped `inferenceservice-config` is wharf_api.config's defaults, and every image that
deploy/ names follows the one scheme: ghcr.io/wharf-serving/<service>:<version>, never latest."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_api.config import CONFIGMAP_NAME, InferenceServiceConfig, to_configmap_data

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
CONFIG_FILE = DEPLOY / "base" / "config" / "inferenceservice-config.yaml"
UPDATE = os.environ.get("WHARF_UPDATE_DEPLOY") == "1"
HEADER = (
    "# KServe's inferenceservice-config with wharf_api.config's defaults, one JSON document per key.\n"
    "# Generated: WHARF_UPDATE_DEPLOY=1 uv run pytest e2e/tests/deploy/test_config_and_images.py\n"
    "# rewrites it, and that test fails when it differs from the defaults. Overlays patch keys.\n"
)
SERVICES = (
    "controller",
    "model-server",
    "storage-initializer",
    "model-agent",
    "router",
    "llm-worker",
)
SCHEME = re.compile(
    r"ghcr\.io/wharf-serving/(?P<service>[a-z0-9-]+):(?P<tag>\d+\.\d+\.\d+)(@sha256:[0-9a-f]{64})?"
)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    str,
    lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None),
)


def _expected_config_text() -> str:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP_NAME, "labels": {"app.kubernetes.io/part-of": "wharf"}},
        "data": to_configmap_data(InferenceServiceConfig()),
    }
    return HEADER + yaml.dump(configmap, Dumper=_Dumper, sort_keys=False)


def test_configmap_holds_the_defaults() -> None:
    expected = _expected_config_text()
    if UPDATE:
        CONFIG_FILE.write_text(expected)
    assert CONFIG_FILE.read_text() == expected, (
        f"{CONFIG_FILE} differs from wharf_api.config's defaults; regenerate with "
        "WHARF_UPDATE_DEPLOY=1 uv run pytest e2e/tests/deploy/test_config_and_images.py"
    )


def _strings(node: Any) -> Iterator[tuple[str, str]]:
    """(key, value) of every string in a document, JSON inside ConfigMap values included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield str(key), value
                if value.lstrip().startswith("{"):
                    try:  # a ConfigMap value holding a JSON document
                        parsed = json.loads(value)
                    except ValueError:
                        continue  # a Go template such as {{.Name}}
                    yield from _strings(parsed)
            else:
                yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _image_references() -> list[tuple[str, str]]:
    """(file, image) for every field named like an image in every YAML file of deploy/."""
    found = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if "crds" in path.relative_to(DEPLOY).parts:
            continue  # generated schemas: no image values
        for doc in yaml.safe_load_all(path.read_text()):
            for key, value in _strings(doc):
                if key.lower().endswith("image") and value:
                    found.append((str(path.relative_to(DEPLOY)), value))
    return found


REFERENCES = _image_references()


def test_references_are_found() -> None:
    files = {f for f, _ in REFERENCES}
    assert "base/controller/deployment.yaml" in files
    assert "base/model-agent/daemonset.yaml" in files
    assert "base/runtimes/kserve-sklearnserver.yaml" in files
    assert "base/config/inferenceservice-config.yaml" in files


@pytest.mark.parametrize(
    ("where", "image"), [pytest.param(f, i, id=f"{f}:{i}") for f, i in sorted(set(REFERENCES))]
)
def test_image_follows_the_scheme(where: str, image: str) -> None:
    match = SCHEME.fullmatch(image)
    assert match, f"{where}: {image} is not ghcr.io/wharf-serving/<service>:<x.y.z>"
    assert match["service"] in SERVICES, f"{where}: {image}: unknown service {match['service']}"


@pytest.mark.parametrize(
    "bad",
    [
        "ghcr.io/wharf-serving/controller:latest",
        "ghcr.io/wharf/model-agent:0.1.0",
        "ghcr.io/wharf-serving/controller",
        "ghcr.io/wharf-serving/huggingface-server:0.1.0",
    ],
)
def test_the_scheme_rejects(bad: str) -> None:
    match = SCHEME.fullmatch(bad)
    assert match is None or match["service"] not in SERVICES
