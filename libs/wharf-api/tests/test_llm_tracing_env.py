"""`spec.tracing` on the scheduler (KServe's injectSchedulerTracing), pure: the engines' exporter
and sampler with the scheduler's own service name, `--tracing=true` for a scheduler other than
Wharf's gateway, and what the container already sets is kept."""

from __future__ import annotations

from typing import Any

from wharf_api import parse_object
from wharf_api.llm import LLMContainer, LLMPod, plan_llm_inference_service
from wharf_api.llm.tracing_env import (
    SCHEDULER_SERVICE_NAME,
    otel_env,
    with_scheduler_tracing,
)
from wharf_api.resources import LLMInferenceService
from wharf_api.resources.llm_inference_service import TracingSpec

TRACING = TracingSpec.model_validate(
    {
        "exporterEndpoint": "http://collector:4317",
        "sampler": "parentbased_traceidratio",
        "samplerArg": "0.1",
        "exporter": "otlp",
    }
)
GATEWAY = ("wharf-router", "gateway", "--port", "8000")


def _pod(command: tuple[str, ...] = GATEWAY, **main: Any) -> LLMPod:
    return LLMPod(
        containers=(
            LLMContainer(name="main", image="router:1", command=command, args=(), **main),
            LLMContainer(name="sidecar", image="side:1", command=("side",), args=()),
        )
    )


def test_the_gateway_gets_the_engines_exporter_and_sampler_under_its_own_name() -> None:
    pod = with_scheduler_tracing(_pod(), TRACING, "team", "qwen")
    main, sidecar = pod.containers
    env = dict(main.env)
    assert env == {
        "OTEL_SERVICE_NAME": "inference-scheduler",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "OTEL_RESOURCE_ATTRIBUTES": (
            "k8s.namespace.name=team,k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME)"
            ",k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),llmisvc.name=qwen"
        ),
    }
    # the same exporter and sampler as an engine's, so the spans meet in one trace
    engine = otel_env(TRACING, "team", "qwen", "inference-server-decode")
    assert {k: v for k, v in env.items() if k != "OTEL_SERVICE_NAME"} == {
        k: v for k, v in engine.items() if k != "OTEL_SERVICE_NAME"
    }
    assert dict(main.env_refs) == {
        "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME": {
            "fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}
        },
        "OTEL_RESOURCE_ATTRIBUTES_POD_NAME": {
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
        },
    }
    # Wharf's gateway reads only the environment: no flag it would refuse
    assert main.args == () and main.command == GATEWAY
    assert sidecar.env == () and sidecar.env_refs == ()


def test_another_scheduler_gets_kserves_tracing_flag_unless_it_has_one() -> None:
    epp = ("/app/epp", "--pool-name", "p")
    traced = with_scheduler_tracing(_pod(epp), TRACING, "team", "qwen").containers[0]
    assert traced.args == ("--tracing=true",)
    given = (
        _pod(epp)
        .containers[0]
        .__class__(name="main", image="epp:1", command=epp, args=("-tracing=false",))
    )
    kept = with_scheduler_tracing(LLMPod(containers=(given,)), TRACING, "team", "qwen")
    assert kept.containers[0].args == ("-tracing=false",)


def test_what_the_container_sets_is_kept() -> None:
    pod = _pod(
        env=(("OTEL_SERVICE_NAME", "my-gateway"),),
        env_refs=(("OTEL_TRACES_SAMPLER_ARG", {"configMapKeyRef": {"name": "c", "key": "k"}}),),
    )
    main = with_scheduler_tracing(pod, TRACING, "team", "qwen").containers[0]
    env = dict(main.env)
    assert env["OTEL_SERVICE_NAME"] == "my-gateway"
    assert "OTEL_TRACES_SAMPLER_ARG" not in env
    assert dict(main.env_refs)["OTEL_TRACES_SAMPLER_ARG"] == {
        "configMapKeyRef": {"name": "c", "key": "k"}
    }
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317"


def test_unset_fields_are_written_empty_and_no_tracing_changes_nothing() -> None:
    env = dict(with_scheduler_tracing(_pod(), TracingSpec(), "team", "qwen").containers[0].env)
    assert env["OTEL_SERVICE_NAME"] == SCHEDULER_SERVICE_NAME
    assert env["OTEL_TRACES_SAMPLER"] == "" and env["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""
    pod = _pod()
    assert with_scheduler_tracing(pod, None, "team", "qwen") is pod


def _svc(spec: dict[str, Any]) -> LLMInferenceService:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha2",
            "kind": "LLMInferenceService",
            "metadata": {"name": "qwen", "namespace": "team"},
            "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-0.5B"}, **spec},
        }
    )
    assert isinstance(obj, LLMInferenceService)
    return obj


def test_the_planned_preset_scheduler_and_the_engines_share_the_preset_exporter() -> None:
    plan = plan_llm_inference_service(_svc({"tracing": {}, "router": {"scheduler": {}}}), {})
    assert plan.router is not None and plan.router.scheduler is not None
    pod = plan.router.scheduler.pod
    assert pod is not None
    tracing = TracingSpec.model_validate(plan.tracing)
    main = with_scheduler_tracing(pod, tracing, plan.namespace, plan.name).main
    engine = dict(plan.main.leader.main.env) if plan.main.leader else {}
    assert dict(main.env)["OTEL_EXPORTER_OTLP_ENDPOINT"] == engine["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert dict(main.env)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert dict(main.env)["OTEL_SERVICE_NAME"] == "inference-scheduler"
