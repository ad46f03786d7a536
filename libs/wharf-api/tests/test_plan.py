"""The plan of an InferenceService: runtime container, args, storage, ports, scaling, wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wharf_api import NoSupportingRuntimeError, default, load_documents, parse_object
from wharf_api.plan import (
    PlanError,
    arg_value,
    plan_inference_service,
    service_host,
    substitute_placeholders,
)
from wharf_api.resources import ClusterServingRuntime, InferenceService, ObjectMeta, ServingRuntime

RUNTIMES_DIR = Path(__file__).parents[3] / "deploy" / "base" / "runtimes"


def builtin_runtimes() -> list[ClusterServingRuntime]:
    out: list[ClusterServingRuntime] = []
    for path in sorted(RUNTIMES_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_documents(path):
            obj = parse_object(doc)
            assert isinstance(obj, ClusterServingRuntime)
            out.append(obj)
    return out


def isvc(predictor: dict[str, Any], **spec: Any) -> InferenceService:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "iris", "namespace": "team", "labels": {"app": "demo"}},
            "spec": {"predictor": predictor, **spec},
        }
    )
    assert isinstance(obj, InferenceService)
    return default(obj)


SKLEARN = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "file:///models/iris"}}


PREDICTIVE = {"kserve-sklearnserver", "kserve-xgbserver", "kserve-lgbserver", "wharf-onnxserver"}
LLM = {"kserve-huggingfaceserver", "kserve-huggingfaceserver-multinode", "kserve-vllmserver"}


def test_builtin_runtimes_cover_the_predictive_formats() -> None:
    names = {rt.name: rt for rt in builtin_runtimes()}
    assert set(names) == PREDICTIVE | LLM
    for rt in (names[name] for name in PREDICTIVE):
        assert rt.spec.protocol_versions == ["v1", "v2", "grpc-v2"]
        assert rt.spec.containers and rt.spec.containers[0].command == ["wharf-model-server"]


def test_runtime_args_are_filled_in_from_the_metadata() -> None:
    plan = plan_inference_service(isvc(SKLEARN), cluster_runtimes=builtin_runtimes())
    pred = plan.components[0]
    assert pred.component == "predictor"
    assert pred.runtime == "kserve-sklearnserver"
    assert pred.runtime_kind == "ClusterServingRuntime"
    assert pred.container.command == ("wharf-model-server",)
    assert pred.container.args == (
        "--model_name=iris",
        "--model_dir=/mnt/models",
        "--http_port=8080",
        "--grpc_port=8081",
        "--model-format=sklearn",
    )
    assert pred.storage_uri == "file:///models/iris"
    assert (pred.http_port, pred.grpc_port) == (8080, 8081)
    assert pred.service_name == "iris-predictor"
    assert plan.host == "iris-team.example.com"
    assert plan.url == "http://iris-team.example.com"


def test_framework_shortcut_plans_like_the_model_syntax() -> None:
    shortcut = isvc({"sklearn": {"storageUri": "file:///models/iris"}})
    runtimes = builtin_runtimes()
    assert plan_inference_service(shortcut, cluster_runtimes=runtimes) == plan_inference_service(
        isvc(SKLEARN), cluster_runtimes=runtimes
    )


def test_isvc_args_follow_the_runtime_args_and_env_overrides() -> None:
    pred = {
        "model": {
            **SKLEARN["model"],
            "args": ["--workers=2"],
            "env": [{"name": "PREDICT_PROBA", "value": "true"}],
        }
    }
    component = plan_inference_service(isvc(pred), cluster_runtimes=builtin_runtimes()).entry
    assert component.container.args[-1] == "--workers=2"
    assert component.container.args[0] == "--model_name=iris"
    assert ("PREDICT_PROBA", "true") in component.container.env


def test_namespaced_runtime_wins_and_its_placeholders_resolve() -> None:
    rt = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": {"name": "team-sklearn"},
            "spec": {
                "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": "x",
                        "args": [
                            "--model_name={{.Name}}",
                            "--ns={{.Namespace}}",
                            "--app={{.Labels.app}}",
                            '--idx={{index .Labels "app"}}',
                            "--http_port=9000",
                        ],
                    }
                ],
            },
        }
    )
    assert isinstance(rt, ServingRuntime)
    pred = plan_inference_service(isvc(SKLEARN), [rt], builtin_runtimes()).entry
    assert pred.runtime == "team-sklearn"
    assert pred.runtime_kind == "ServingRuntime"
    assert pred.container.args == (
        "--model_name=iris",
        "--ns=team",
        "--app=demo",
        "--idx=demo",
        "--http_port=9000",
    )
    assert pred.http_port == 9000
    assert pred.grpc_port is None


def test_unknown_placeholder_names_the_field() -> None:
    with pytest.raises(PlanError, match=r"spec.predictor.args: unsupported placeholder"):
        substitute_placeholders("{{.Spec}}", ObjectMeta(name="x"), where="spec.predictor.args")


@pytest.mark.parametrize("field", ["TensorParallelSize", "PipelineParallelSize", "StorageUri"])
def test_fields_outside_the_metadata_fail_as_in_kserve(field: str) -> None:
    # KServe executes the runtime container as a Go template over ObjectMeta only: these
    # fail there with "can't evaluate field ... in type v1.ObjectMeta"
    with pytest.raises(PlanError, match=r"metadata only .* cannot render this runtime either"):
        substitute_placeholders(f"--x={{{{.{field}}}}}", ObjectMeta(name="x"), where="args")


def test_a_missing_key_prints_as_go_prints_it() -> None:
    meta = ObjectMeta(name="x", generate_name="x-", labels={"app": "a"})
    # `.Labels.key` reaches a missing map key: Go prints <no value>; `index` gives the zero value
    assert substitute_placeholders("{{.Labels.serviceEnvelope}}", meta) == "<no value>"
    assert substitute_placeholders("{{.Annotations.k}}", meta) == "<no value>"
    assert substitute_placeholders('{{index .Labels "serviceEnvelope"}}', meta) == ""
    assert substitute_placeholders("{{.Labels.app}}/{{.GenerateName}}", meta) == "a/x-"


def test_no_runtime_for_the_format() -> None:
    pred = {"model": {"modelFormat": {"name": "pmml"}, "storageUri": "file:///m"}}
    with pytest.raises(NoSupportingRuntimeError, match="pmml"):
        plan_inference_service(isvc(pred), cluster_runtimes=builtin_runtimes())


def test_custom_predictor_container_takes_storage_from_env() -> None:
    pred = {
        "containers": [
            {
                "name": "kserve-container",
                "image": "me/predictor",
                "command": ["python", "-m", "server"],
                "args": ["--model_name={{.Name}}"],
                "env": [{"name": "STORAGE_URI", "value": "file:///models/m"}],
            }
        ]
    }
    component = plan_inference_service(isvc(pred)).entry
    assert component.runtime is None
    assert component.container.command == ("python", "-m", "server")
    assert component.container.args == ("--model_name=iris",)
    assert component.storage_uri == "file:///models/m"


def test_transformer_is_wired_to_the_predictor_service() -> None:
    transformer = {"containers": [{"image": "me/t", "command": ["python", "-m", "t"]}]}
    plan = plan_inference_service(
        isvc(SKLEARN, transformer=transformer), cluster_runtimes=builtin_runtimes()
    )
    assert [c.component for c in plan.components] == ["predictor", "transformer"]
    entry = plan.entry
    assert entry.component == "transformer"
    assert entry.service_name == "iris-transformer"
    assert arg_value(entry.container.args, "--predictor_host") == "iris-predictor.team"
    assert arg_value(entry.container.args, "--model_name") == "iris"
    assert entry.http_port == 8080


def test_scaling_defaults_and_bounds() -> None:
    plain = plan_inference_service(isvc(SKLEARN), cluster_runtimes=builtin_runtimes()).entry
    assert plain.scaling.min_replicas == 1
    assert plain.scaling.max_replicas == 0  # unbounded: each control plane caps it
    assert (plain.scaling.metric, plain.scaling.target) == ("concurrency", 100)
    scaled = {**SKLEARN, "minReplicas": 0, "maxReplicas": 3, "scaleMetric": "rps", "scaleTarget": 5}
    s = plan_inference_service(isvc(scaled), cluster_runtimes=builtin_runtimes()).entry.scaling
    assert (s.min_replicas, s.max_replicas, s.metric, s.target) == (0, 3, "rps", 5)


def test_revision_key_ignores_scaling_and_canary_but_not_the_model() -> None:
    runtimes = builtin_runtimes()
    base = plan_inference_service(isvc(SKLEARN), cluster_runtimes=runtimes).entry
    rescaled = plan_inference_service(
        isvc({**SKLEARN, "maxReplicas": 4, "canaryTrafficPercent": 10}), cluster_runtimes=runtimes
    ).entry
    moved = {"model": {**SKLEARN["model"], "storageUri": "file:///models/iris-v2"}}
    changed = plan_inference_service(isvc(moved), cluster_runtimes=runtimes).entry
    assert rescaled.revision_key() == base.revision_key()
    assert rescaled.canary_traffic_percent == 10
    assert changed.revision_key() != base.revision_key()


def test_service_host_follows_kserve_domain_template() -> None:
    assert service_host("a", "b") == "a-b.example.com"
    assert service_host("a", "b", "local.dev") == "a-b.local.dev"
