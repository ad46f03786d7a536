"""Runtime selection follows KServe, one rule per test."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api import NoSupportingRuntimeError, parse_object, select_runtime
from wharf_api.resources import ClusterServingRuntime, InferenceService, ServingRuntime


def _isvc(
    fmt: str = "sklearn",
    *,
    version: str | None = None,
    runtime: str | None = None,
    protocol: str | None = None,
    worker: bool = False,
) -> InferenceService:
    model: dict[str, Any] = {"modelFormat": {"name": fmt}}
    if version:
        model["modelFormat"]["version"] = version
    if runtime:
        model["runtime"] = runtime
    if protocol:
        model["protocolVersion"] = protocol
    predictor: dict[str, Any] = {"model": model}
    if worker:
        predictor["workerSpec"] = {"pipelineParallelSize": 2}
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "m"},
            "spec": {"predictor": predictor},
        }
    )
    assert isinstance(obj, InferenceService)
    return obj


def _spec(
    formats: list[dict[str, Any]],
    protocols: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "supportedModelFormats": formats,
        "containers": [{"name": "kserve-container", "image": "x"}],
        **extra,
    }
    if protocols is not None:
        spec["protocolVersions"] = protocols
    return spec


def _sr(name: str, formats: list[dict[str, Any]], **kw: Any) -> ServingRuntime:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": {"name": name, **kw.pop("metadata", {})},
            "spec": _spec(formats, **kw),
        }
    )
    assert isinstance(obj, ServingRuntime)
    return obj


def _csr(name: str, formats: list[dict[str, Any]], **kw: Any) -> ClusterServingRuntime:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ClusterServingRuntime",
            "metadata": {"name": name},
            "spec": _spec(formats, **kw),
        }
    )
    assert isinstance(obj, ClusterServingRuntime)
    return obj


SK = {"name": "sklearn", "autoSelect": True}


def test_namespaced_runtime_beats_cluster_runtime_even_with_lower_priority() -> None:
    name, _, is_cluster = select_runtime(
        _isvc(),
        [_sr("ns", [SK])],
        [_csr("cluster", [{**SK, "priority": 10}])],
    )
    assert (name, is_cluster) == ("ns", False)


def test_cluster_runtime_used_when_no_namespaced_runtime_fits() -> None:
    name, spec, is_cluster = select_runtime(
        _isvc(), [_sr("ns-xgb", [{"name": "xgboost", "autoSelect": True}])], [_csr("c", [SK])]
    )
    assert (name, is_cluster) == ("c", True)
    assert spec.supported_model_formats is not None


def test_disabled_runtime_is_skipped() -> None:
    name, _, _ = select_runtime(_isvc(), [_sr("off", [SK], disabled=True)], [_csr("on", [SK])])
    assert name == "on"


def test_format_without_auto_select_is_skipped() -> None:
    with pytest.raises(NoSupportingRuntimeError) as caught:
        select_runtime(_isvc(), [_sr("manual", [{"name": "sklearn"}])], [])
    assert "ServingRuntime/manual" in caught.value.reasons
    assert "autoSelect" in str(caught.value)


def test_format_version_must_match_when_given() -> None:
    runtimes = [
        _sr("v0", [{**SK, "version": "0"}]),
        _sr("v1", [{**SK, "version": "1"}]),
    ]
    assert select_runtime(_isvc(version="1"), runtimes, [])[0] == "v1"
    # without a version any version of the format matches; name breaks the tie
    assert select_runtime(_isvc(), runtimes, [])[0] == "v0"


def test_protocol_version_must_be_supported_default_v1() -> None:
    runtimes = [_sr("v2-only", [SK], protocols=["v2"]), _sr("v1", [SK], protocols=["v1"])]
    assert select_runtime(_isvc(), runtimes, [])[0] == "v1"
    assert select_runtime(_isvc(protocol="v2"), runtimes, [])[0] == "v2-only"


def test_empty_protocol_list_supports_every_protocol() -> None:
    assert select_runtime(_isvc(protocol="grpc-v2"), [_sr("any", [SK])], [])[0] == "any"


def test_multi_model_runtime_is_skipped() -> None:
    runtimes = [_sr("mm", [SK], multiModel=True), _sr("single", [SK])]
    assert select_runtime(_isvc(), runtimes, [])[0] == "single"


def test_multi_node_needs_a_runtime_with_worker_spec_and_vice_versa() -> None:
    worker = {"containers": [{"name": "worker-container", "image": "x"}]}
    runtimes = [_sr("mn", [SK], workerSpec=worker), _sr("single", [SK])]
    assert select_runtime(_isvc(), runtimes, [])[0] == "single"
    assert select_runtime(_isvc(worker=True), runtimes, [])[0] == "mn"


def test_highest_priority_wins() -> None:
    runtimes = [
        _sr("a-low", [{**SK, "priority": 1}]),
        _sr("b-high", [{**SK, "priority": 5}]),
        _sr("c-none", [SK]),
    ]
    assert select_runtime(_isvc(), runtimes, [])[0] == "b-high"


def test_priority_only_counts_with_auto_select() -> None:
    runtimes = [
        _sr("a", [SK]),
        _sr("b", [{"name": "sklearn", "priority": 9}, {"name": "sklearn", "autoSelect": True}]),
    ]
    assert select_runtime(_isvc(), runtimes, [])[0] == "a"


def test_ties_break_by_name_then_stay_stable() -> None:
    runtimes = [_sr("zeta", [SK]), _sr("alpha", [SK])]
    assert select_runtime(_isvc(), runtimes, [])[0] == "alpha"
    assert select_runtime(_isvc(), list(reversed(runtimes)), [])[0] == "alpha"


def test_newest_runtime_wins_at_equal_priority() -> None:
    runtimes = [
        _sr("a-old", [SK], metadata={"creationTimestamp": "2024-01-01T00:00:00Z"}),
        _sr("b-new", [SK], metadata={"creationTimestamp": "2025-01-01T00:00:00Z"}),
    ]
    assert select_runtime(_isvc(), runtimes, [])[0] == "b-new"


def test_explicit_runtime_is_used_even_without_auto_select() -> None:
    runtimes = [_sr("auto", [SK]), _sr("manual", [{"name": "sklearn"}])]
    assert select_runtime(_isvc(runtime="manual"), runtimes, [])[0] == "manual"


def test_explicit_runtime_falls_back_to_cluster_runtime() -> None:
    assert select_runtime(_isvc(runtime="c"), [], [_csr("c", [SK])]) == (
        "c",
        _csr("c", [SK]).spec,
        True,
    )


def test_explicit_runtime_must_support_the_format() -> None:
    with pytest.raises(NoSupportingRuntimeError, match="NoSupportingRuntime"):
        select_runtime(_isvc("xgboost", runtime="sk"), [_sr("sk", [SK])], [])


def test_explicit_runtime_that_is_disabled_is_refused() -> None:
    with pytest.raises(NoSupportingRuntimeError, match="RuntimeDisabled"):
        select_runtime(_isvc(runtime="sk"), [_sr("sk", [SK], disabled=True)], [])


def test_explicit_runtime_that_does_not_exist_is_refused() -> None:
    with pytest.raises(NoSupportingRuntimeError, match="RuntimeNotRecognized"):
        select_runtime(_isvc(runtime="nope"), [_sr("sk", [SK])], [])


def test_no_runtime_lists_the_reason_for_each() -> None:
    with pytest.raises(NoSupportingRuntimeError) as caught:
        select_runtime(
            _isvc(),
            [_sr("off", [SK], disabled=True)],
            [_csr("xgb", [{"name": "xgboost", "autoSelect": True}])],
        )
    assert caught.value.reasons == {
        "ServingRuntime/off": "disabled",
        "ClusterServingRuntime/xgb": "does not support model format sklearn (autoSelect)",
    }
    assert "ServingRuntime/off: disabled" in str(caught.value)


def test_framework_shortcut_is_selected_like_model_format() -> None:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "t"},
            "spec": {"predictor": {"triton": {"storageUri": "gs://x"}}},
        }
    )
    assert isinstance(obj, InferenceService)
    triton = {"name": "triton", "autoSelect": True}
    # an undefaulted triton shortcut asks for v1 until defaulting says v2
    runtimes = [_sr("tr", [triton], protocols=["v1", "v2"])]
    assert select_runtime(obj, runtimes, [])[0] == "tr"


def test_seed_isvc_selects_the_seed_cluster_runtime() -> None:
    from pathlib import Path

    from wharf_api import load_documents

    seeds = Path(__file__).parent / "fixtures" / "seeds"
    isvc = parse_object(load_documents(seeds / "011-inferenceservice-single-llm.yaml")[0])
    csr = parse_object(
        load_documents(seeds / "010-clusterservingruntime-kserve-vllmserver.yaml")[0]
    )
    assert isinstance(isvc, InferenceService)
    assert isinstance(csr, ClusterServingRuntime)
    assert select_runtime(isvc, [], [csr])[:1] == ("kserve-vllmserver",)
