"""The registry: every kind with its group, versions, names and scope."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from wharf_api import iter_resources, load_documents, parse_object
from wharf_api.registry import find, lookup

EXPECTED = {
    "InferenceService": ("inferenceservices", ("isvc",), "Namespaced", ("v1beta1",)),
    "ServingRuntime": ("servingruntimes", (), "Namespaced", ("v1alpha1",)),
    "ClusterServingRuntime": ("clusterservingruntimes", (), "Cluster", ("v1alpha1",)),
    "InferenceGraph": ("inferencegraphs", ("ig",), "Namespaced", ("v1alpha1",)),
    "ClusterStorageContainer": ("clusterstoragecontainers", (), "Cluster", ("v1alpha1",)),
    "LocalModelCache": ("localmodelcaches", (), "Cluster", ("v1alpha1",)),
    "LocalModelNamespaceCache": ("localmodelnamespacecaches", (), "Namespaced", ("v1alpha1",)),
    "LocalModelNode": ("localmodelnodes", (), "Cluster", ("v1alpha1",)),
    "LocalModelNodeGroup": ("localmodelnodegroups", (), "Cluster", ("v1alpha1",)),
    "TrainedModel": ("trainedmodels", ("tm",), "Namespaced", ("v1alpha1",)),
    "LLMInferenceService": (
        "llminferenceservices",
        ("llmisvc",),
        "Namespaced",
        ("v1alpha1", "v1alpha2"),
    ),
    "LLMInferenceServiceConfig": (
        "llminferenceserviceconfigs",
        ("llmisvcconfig",),
        "Namespaced",
        ("v1alpha1", "v1alpha2"),
    ),
}


def test_every_kind_is_registered_with_names_and_scope() -> None:
    got = {i.kind: (i.plural, i.short_names, i.scope, i.served_versions) for i in iter_resources()}
    assert got == EXPECTED
    for info in iter_resources():
        assert info.group == "serving.kserve.io"
        assert info.storage_version in info.served_versions
        assert issubclass(info.model, BaseModel)


def test_llmisvc_is_stored_at_v1alpha2() -> None:
    info = find("llmisvc")
    assert info is not None
    assert info.storage_version == "v1alpha2"


@pytest.mark.parametrize("name", ["isvc", "InferenceService", "inferenceservices", "ig", "tm"])
def test_find_by_any_name(name: str) -> None:
    assert find(name) is not None


def test_lookup_by_api_version_and_kind() -> None:
    a = lookup("serving.kserve.io/v1alpha1", "LLMInferenceService")
    b = lookup("serving.kserve.io/v1alpha2", "LLMInferenceService")
    assert a is not None and a is b
    assert lookup("serving.kserve.io/v1alpha1", "InferenceService") is None


def test_models_serialise_camel_case_by_alias() -> None:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "m"},
            "spec": {"predictor": {"min_replicas": 2, "model": {"modelFormat": {"name": "x"}}}},
        }
    )
    assert obj.model_dump(exclude_none=True)["spec"]["predictor"]["minReplicas"] == 2


def test_load_documents_reads_multi_document_text_and_files(tmp_path: Path) -> None:
    text = "---\napiVersion: v1\nkind: A\n---\n---\napiVersion: v1\nkind: B\n"
    assert [d["kind"] for d in load_documents(text)] == ["A", "B"]
    f = tmp_path / "m.yaml"
    f.write_text(text)
    assert load_documents(f) == load_documents(str(f)) == load_documents(text)
