"""ClusterStorageContainer selection by supportedUriFormats, as KServe's webhook does it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_api import parse_object
from wharf_api.config import StorageInitializerConfig
from wharf_api.resources import ClusterStorageContainer
from wharf_api.storage_containers import (
    LOCAL_MODEL_DOWNLOAD_JOB,
    StorageContainerError,
    select_storage_container,
    storage_initializer,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _csc(name: str, formats: list[dict[str, str]], **extra: Any) -> ClusterStorageContainer:
    spec: dict[str, Any] = {
        "container": {"name": "storage-initializer", "image": f"example/{name}"},
        "supportedUriFormats": formats,
    }
    if "workload_type" in extra:
        spec["workloadType"] = extra.pop("workload_type")
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ClusterStorageContainer",
            "metadata": {"name": name},
            "spec": spec,
            **extra,
        }
    )
    assert isinstance(obj, ClusterStorageContainer)
    return obj


def _default() -> ClusterStorageContainer:
    data = yaml.safe_load(
        (FIXTURES / "kserve-docs/clusterstoragecontainer-default.yaml").read_text()
    )
    obj = parse_object(data)
    assert isinstance(obj, ClusterStorageContainer)
    return obj


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/model",
        "gs://bucket/model",
        "hf://org/model",
        "https://acct.blob.core.windows.net/c/model",
        "https://example.com/model.tgz",
    ],
)
def test_kserve_default_container_supports_its_uris(uri: str) -> None:
    chosen = select_storage_container(uri, [_default()])
    assert chosen is not None and chosen.name == "default"


@pytest.mark.parametrize("uri", ["pvc://claim/model", "oci://registry/model:1", "/mnt/models"])
def test_uris_no_container_supports_get_none(uri: str) -> None:
    assert select_storage_container(uri, [_default()]) is None


def test_prefix_matches_only_at_the_start() -> None:
    kit = _csc("kit", [{"prefix": "kit://"}])
    assert select_storage_container("kit://org/model:v1", [kit]) is kit
    assert select_storage_container("s3://b/kit://x", [kit]) is None


def test_regex_is_searched_unanchored_like_go() -> None:
    custom = _csc("custom", [{"regex": "models\\.internal"}])
    assert select_storage_container("https://models.internal/m.tgz", [custom]) is custom


def test_disabled_containers_are_skipped() -> None:
    off = _csc("a-off", [{"prefix": "s3://"}], disabled=True)
    on = _csc("b-on", [{"prefix": "s3://"}])
    assert select_storage_container("s3://b/m", [off, on]) is on


def test_workload_type_must_match_and_defaults_to_init_container() -> None:
    job = _csc("job", [{"prefix": "s3://"}], workload_type=LOCAL_MODEL_DOWNLOAD_JOB)
    plain = _csc("plain", [{"prefix": "s3://"}])
    assert select_storage_container("s3://b/m", [job, plain]) is plain
    chosen = select_storage_container(
        "s3://b/m", [job, plain], workload_type=LOCAL_MODEL_DOWNLOAD_JOB
    )
    assert chosen is job


def test_first_by_name_wins_whatever_the_input_order() -> None:
    b = _csc("b", [{"prefix": "s3://"}])
    a = _csc("a", [{"prefix": "s3://"}])
    chosen = select_storage_container("s3://x/y", [b, a])
    assert chosen is not None and chosen.name == "a"


def test_invalid_regex_names_the_container() -> None:
    bad = _csc("broken", [{"regex": "("}])
    with pytest.raises(StorageContainerError, match=r"broken.*regex"):
        select_storage_container("s3://b/m", [bad])


def test_the_storage_initializer_is_the_chosen_container_over_the_config() -> None:
    config = StorageInitializerConfig()
    hf = _csc("hf", [{"prefix": "hf://"}])
    chosen = storage_initializer("hf://org/model", [hf], config)
    assert chosen.image == "example/hf"
    assert chosen.base["name"] == "storage-initializer"
    # the container gives no resources: the config's
    assert chosen.resources == {
        "requests": {"cpu": config.cpu_request, "memory": config.memory_request},
        "limits": {"cpu": config.cpu_limit, "memory": config.memory_limit},
    }


def test_without_a_supporting_container_the_config_downloads() -> None:
    config = StorageInitializerConfig(image="example/default:1")
    chosen = storage_initializer("s3://b/m", [_csc("hf", [{"prefix": "hf://"}])], config)
    assert (chosen.image, chosen.base) == ("example/default:1", {})


def test_the_containers_own_resources_are_kept() -> None:
    own = {"limits": {"cpu": "2"}}
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ClusterStorageContainer",
            "metadata": {"name": "s3"},
            "spec": {
                "container": {"name": "dl", "image": "example/s3", "resources": own},
                "supportedUriFormats": [{"prefix": "s3://"}],
            },
        }
    )
    assert isinstance(obj, ClusterStorageContainer)
    chosen = storage_initializer("s3://b/m", [obj], StorageInitializerConfig())
    assert chosen.resources == own
