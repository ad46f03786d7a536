"""The CRDs of the other projects whose objects Wharf creates, for tests that check those objects.

The real CRDs (Gateway API, the Gateway API Inference Extension, KEDA, Knative Serving,
LeaderWorkerSet) come from `e2e/cluster/third-party-crds.sh`, which takes them from the Go
modules those projects publish and caches them under ~/.cache/wharf/crds; the folder is asked for
once per test process. The kinds it does not fetch keep a hand-written stub in `e2e/cluster/crds`.

Without the real CRDs (no Go toolchain, no module proxy) a test calling `fixture_crd_files` or
`crd_schemas` is skipped with the reason, except under CI (`CI=true` or `WHARF_K8S_REQUIRED=1`),
where it fails: a schema check that silently accepted anything would prove nothing.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_e2e.setup_gate import THIRD_PARTY_CRDS, failure_note, wait_for_setup

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
SCRIPT = CLUSTER / "third-party-crds.sh"
STUB_CRDS = CLUSTER / "crds"
DIR_ENV = "WHARF_THIRD_PARTY_CRDS"
# A first fetch downloads six Go modules (a few MB); later calls are a cache hit.
FETCH_TIMEOUT_S = 300
# The largest real CRD (LeaderWorkerSet, a whole pod template twice) is about 1.3 MB.
MAX_CRD_BYTES = 8 * 1024 * 1024


class ThirdPartyCrdsUnavailable(RuntimeError):
    """The real third-party CRDs could not be obtained; the message says why and what to do."""


def crds_required() -> bool:
    """Under CI missing CRDs fail the tests that need them instead of skipping them."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("WHARF_K8S_REQUIRED") == "1"


@functools.cache
def third_party_crd_dir() -> Path:
    """The folder of real third-party CRDs (and its kustomization.yaml), fetched or cached by
    `e2e/cluster/third-party-crds.sh`; `WHARF_THIRD_PARTY_CRDS` names a folder to use as is."""
    # The background set-up may be fetching them right now (and then sets the variable).
    wait_for_setup()
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT)],
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ThirdPartyCrdsUnavailable(f"{SCRIPT.name} could not run: {exc}") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ThirdPartyCrdsUnavailable(
            f"{SCRIPT.name} failed (exit {done.returncode}); it needs Go and the Go module proxy,"
            f" or {DIR_ENV} naming a folder of the CRDs:\n{tail}"
        )
    folder = Path(lines[-1])
    if not (folder / "kustomization.yaml").is_file():
        raise ThirdPartyCrdsUnavailable(f"{SCRIPT.name} printed {folder}, which holds no CRDs")
    return folder


def require_third_party_crd_dir() -> Path:
    """`third_party_crd_dir()`, or the test is skipped with the reason (failed under CI)."""
    try:
        return third_party_crd_dir()
    except ThirdPartyCrdsUnavailable as exc:
        note = failure_note(THIRD_PARTY_CRDS)
        reason = f"the real third-party CRDs are unavailable: {exc}{note}"
        if crds_required():
            pytest.fail(reason)
        pytest.skip(reason)


def _listed(folder: Path) -> list[Path]:
    """The files a folder's kustomization.yaml names, in its order."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    names = kustomization["resources"]
    for name in names:  # files of this folder only, never a path out of it
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(".yaml"):
            raise ValueError(f"{folder}/kustomization.yaml: {name!r} is not a CRD file name")
    return [folder / name for name in names]


def third_party_crd_file(name: str) -> Path:
    """One real CRD by its file name, e.g. `serving.knative.dev_services.yaml`."""
    path = require_third_party_crd_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {SCRIPT.name} fetches no CRD of that name")
    return path


def fixture_crd_files() -> list[Path]:
    """Every third-party CRD the tests install: the real ones, then the stubs of the kinds not
    fetched (cert-manager's)."""
    return [*_listed(require_third_party_crd_dir()), *_listed(STUB_CRDS)]


def load_crd(path: Path) -> dict[str, Any]:
    """One CRD document, refusing a file too large to be one."""
    size = path.stat().st_size
    if size > MAX_CRD_BYTES:
        raise ValueError(f"{path}: {size} bytes, more than a CRD's {MAX_CRD_BYTES}")
    crd = yaml.load(path.read_text(), Loader=_loader())
    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path}: not a CustomResourceDefinition")
    return crd


@functools.cache
def _loader() -> type[yaml.SafeLoader]:
    # The C loader reads the megabyte-sized CRDs about ten times faster; not every PyYAML has it.
    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader


_OBJECT_FIELDS = ("apiVersion", "kind", "metadata")


def strict_schema(schema: dict[str, Any], *, root: bool = True) -> dict[str, Any]:
    """A CRD's structural schema as a JSON schema that rejects unknown fields, as the API server
    does under `kubectl apply`'s default strict field validation (plain JSON schema would let a
    misspelled field through; the server would reject it, or prune it under non-strict clients).

    An object with `properties` is closed unless it preserves unknown fields or says what its
    other fields are; an embedded resource (and the root) also takes apiVersion, kind and
    metadata. The value validations (allOf, anyOf, oneOf, not) are kept as they are: their
    `properties` only constrain fields the structural part declares."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {
            name: strict_schema(sub, root=False) for name, sub in out["properties"].items()
        }
        if root or out.get("x-kubernetes-embedded-resource"):
            for name in _OBJECT_FIELDS:
                out["properties"].setdefault(name, {})
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_schema(out["additionalProperties"], root=False)
    if isinstance(out.get("items"), dict):
        out["items"] = strict_schema(out["items"], root=False)
    return out


@functools.cache
def _schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in fixture_crd_files():
        crd = load_crd(path)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            schemas[(f"{group}/{version['name']}", kind)] = strict_schema(schema)
    return schemas


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """The openAPIV3Schema of every version of every fixture CRD, keyed by (apiVersion, kind),
    closed to unknown fields (`strict_schema`); parsed once per test process."""
    require_third_party_crd_dir()
    return _schemas()
