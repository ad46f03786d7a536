"""The pure decisions of the LLMInferenceService controller: which children, how the router finds
the pods, what the entry point is without the optional APIs, the status, and which services a
config change touches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from wharf_api import load_documents
from wharf_api.config import InferenceServiceConfig
from wharf_api.llm import LLMPlan
from wharf_controller.desired.llm_inference_service import LLMInputs, entry_point
from wharf_controller.llm_controller import configs_used, uses_config
from wharf_controller.llm_render import configs_for, parse_llm, parse_llm_config, render_llm_service
from wharf_controller.llm_status import LLMObserved, llm_status

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
JSON = dict[str, Any]


def _example(name: str) -> JSON:
    return next(d for d in load_documents(EXAMPLES / name) if d["kind"] == "LLMInferenceService")


def _render(doc: JSON, **kw: Any) -> tuple[LLMPlan, LLMInputs, list[JSON]]:
    configs = [parse_llm_config(d) for d in load_documents(EXAMPLES / "llm-config-cpu.yaml")]
    return render_llm_service(parse_llm(doc), configs, InferenceServiceConfig(), **kw)


def _by(objects: list[JSON]) -> dict[tuple[str, str], JSON]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_prefill_decode_makes_two_workloads_and_a_router_that_finds_their_pods() -> None:
    _, _, objects = _render(_example("llm-pd.yaml"))
    by = _by(objects)
    decode, prefill = (
        by[("Deployment", "qwen-pd-kserve")],
        by[("Deployment", "qwen-pd-kserve-prefill")],
    )
    assert decode["spec"]["template"]["metadata"]["labels"]["llm-d.ai/role"] == "decode"
    assert prefill["spec"]["template"]["metadata"]["labels"]["llm-d.ai/role"] == "prefill"
    assert decode["spec"]["replicas"] == 2
    # the worker's command is the plan's, untouched; the model comes from the init container
    main = decode["spec"]["template"]["spec"]["containers"][0]
    assert main["command"][:3] == ["wharf-llm-worker", "--role", "decode"]
    init = decode["spec"]["template"]["spec"]["initContainers"][0]
    assert init["args"] == ["hf://Qwen/Qwen2.5-0.5B-Instruct", "/mnt/models"]
    assert {
        "name": "kserve-provision-location",
        "mountPath": "/mnt/models",
        "readOnly": True,
    } in main["volumeMounts"]
    for name in ("qwen-pd-kserve", "qwen-pd-kserve-prefill", "qwen-pd-epp-service"):
        assert ("Service", name) in by
    router = by[("Deployment", "qwen-pd-kserve-router-scheduler")]
    command = router["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["wharf-router", "gateway"]
    assert "--pool-name" not in command  # not a flag of the gateway
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    assert flags["--kube-namespace"] == "default"
    assert flags["--kube-selector"] == (
        "app.kubernetes.io/name=qwen-pd,app.kubernetes.io/part-of=llminferenceservice,"
        "kserve.io/component=workload"
    )
    assert flags["--role-label"] == "llm-d.ai/role" and flags["--kube-port"] == "8000"
    # least privilege: read pods in the namespace, nothing else
    role = by[("Role", "qwen-pd-epp-role")]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = by[("RoleBinding", "qwen-pd-epp-rb")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "qwen-pd-epp-sa", "namespace": "default"}
    ]
    assert router["spec"]["template"]["spec"]["serviceAccountName"] == "qwen-pd-epp-sa"
    pool = by[("InferencePool", "qwen-pd-inference-pool")]
    assert pool["spec"]["endpointPickerRef"]["name"] == "qwen-pd-epp-service"
    route = by[("HTTPRoute", "qwen-pd-kserve-route")]
    backends = {(b["kind"], b["name"]) for r in route["spec"]["rules"] for b in r["backendRefs"]}
    assert backends == {("Service", "qwen-pd-epp-service")}


def test_without_the_inference_extension_there_is_no_pool_and_without_gateway_api_no_route() -> (
    None
):
    doc = _example("llm-pd.yaml")
    _, inputs, objects = _render(doc, inference_pool_api=False)
    kinds = {o["kind"] for o in objects}
    assert "InferencePool" not in kinds and "HTTPRoute" in kinds
    plan, inputs, objects = _render(doc, inference_pool_api=False, gateway_api=False)
    kinds = {o["kind"] for o in objects}
    assert "InferencePool" not in kinds and "HTTPRoute" not in kinds
    entry = entry_point(inputs)
    assert (entry.service, entry.port, entry.route) == ("qwen-pd-epp-service", 8080, None)
    status = llm_status(
        plan, LLMObserved({}), 1, "t", {}, entry_service=entry.service, entry_port=entry.port,
        pool_expected=False, route_expected=False,
    )  # fmt: skip
    assert status["url"] == "http://qwen-pd-epp-service.default.svc.cluster.local:8080"


def test_without_a_router_the_workload_service_is_the_entry_point() -> None:
    doc = _example("llm-pd.yaml")
    doc = {**doc, "spec": {k: v for k, v in doc["spec"].items() if k != "router"}}
    doc["metadata"] = {"name": "plain"}
    _, inputs, objects = _render(doc)
    by = _by(objects)
    assert not any(k == "HTTPRoute" or "epp" in n for k, n in by)
    svc = by[("Service", "plain-kserve-workload-svc")]
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "llminferenceservice-workload"
    assert entry_point(inputs).service == "plain-kserve-workload-svc"


def test_multi_node_is_a_leader_worker_set_with_the_plans_templates() -> None:
    plan, _, objects = _render(_example("llm-multinode.yaml"))
    lws = _by(objects)[("LeaderWorkerSet", "llama-70b-kserve-mn")]
    group = lws["spec"]["leaderWorkerTemplate"]
    assert group["size"] == plan.main.size == 2
    assert group["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader = group["leaderTemplate"]["spec"]["containers"][0]
    worker = group["workerTemplate"]["spec"]["containers"][0]
    assert plan.main.leader is not None and plan.main.worker is not None
    assert leader["command"] == list(plan.main.leader.main.command)
    assert worker["command"] == list(plan.main.worker.main.command)
    # every pod runs one node of the group; it reads the leader's address from LWS's env
    assert worker["command"][:2] == ["wharf-llm-worker", "multinode"]
    # the Service sends requests to the leaders only
    svc = _by(objects)[("Service", "llama-70b-kserve-mn")]
    assert svc["spec"]["selector"]["app.kubernetes.io/component"].startswith(
        "llminferenceservice-workload-leader"
    )


def test_the_router_runs_the_presets_command_as_rendered() -> None:
    # the scheduler preset gives the gateway its pod discovery; the controller adds only the
    # peer exchange's flags after it (test_llm_router_peers)
    plan, _, objects = _render(_example("llm-pd.yaml"))
    assert plan.router is not None and plan.router.scheduler is not None
    assert plan.router.scheduler.pod is not None
    deployment = _by(objects)[("Deployment", "qwen-pd-kserve-router-scheduler")]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    preset = list(plan.router.scheduler.pod.main.command)
    assert command[: len(preset)] == preset
    assert command[len(preset)] == "--peer-listen"
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    assert flags["--kube-selector"] == (
        "app.kubernetes.io/name=qwen-pd,app.kubernetes.io/part-of=llminferenceservice,"
        "kserve.io/component=workload"
    )
    assert flags["--kube-namespace"] == plan.namespace
    assert flags["--role-label"] == "llm-d.ai/role" and flags["--kube-port"] == "8000"


def _deployment(name: str, ready: bool) -> JSON:
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "updatedReplicas": 1 if ready else 0,
            "availableReplicas": 1 if ready else 0,
            "readyReplicas": 1 if ready else 0,
        },
    }


def test_status_names_each_workload_and_is_ready_when_all_are() -> None:
    plan, inputs, _ = _render(_example("llm-pd.yaml"))
    entry = entry_point(inputs)

    def status(prefill_ready: bool, previous: JSON, now: str) -> JSON:
        observed = LLMObserved(
            workloads={
                "qwen-pd-kserve": _deployment("qwen-pd-kserve", True),
                "qwen-pd-kserve-prefill": _deployment("qwen-pd-kserve-prefill", prefill_ready),
            },
            scheduler=_deployment("qwen-pd-kserve-router-scheduler", True),
            inference_pool={"metadata": {"name": "qwen-pd-inference-pool"}},
            http_route={"metadata": {"name": "qwen-pd-kserve-route"}},
        )
        return llm_status(
            plan, observed, 3, now, previous, entry_service=entry.service,
            entry_port=entry.port, pool_expected=True, route_expected=True,
        )  # fmt: skip

    first = status(False, {}, "t1")
    conds = {c["type"]: c for c in first["conditions"]}
    assert conds["MainWorkloadReady"]["status"] == "True"
    assert conds["PrefillWorkloadReady"]["status"] == "False"
    assert "qwen-pd-kserve-prefill" in conds["PrefillWorkloadReady"]["message"]
    assert (
        conds["Ready"]["status"] == "False" and "PrefillWorkloadReady" in conds["Ready"]["message"]
    )
    for wanted in (
        "SchedulerWorkloadReady",
        "RouterReady",
        "InferencePoolReady",
        "HTTPRoutesReady",
    ):
        assert conds[wanted]["status"] == "True"
    second = status(True, first, "t2")
    conds2 = {c["type"]: c for c in second["conditions"]}
    assert conds2["Ready"]["status"] == "True" and conds2["Ready"]["lastTransitionTime"] == "t2"
    assert conds2["MainWorkloadReady"]["lastTransitionTime"] == "t1"  # unchanged: time kept
    assert second["url"] == "http://qwen-pd-default.example.com/default/qwen-pd"
    assert second["address"]["url"] == "http://qwen-pd-epp-service.default.svc.cluster.local:8080"
    assert second["observedGeneration"] == 3
    assert {"name": "cpu-small", "namespace": "kserve", "source": "UserRef"} in second[
        "appliedConfigs"
    ]


def test_a_config_change_reaches_the_services_that_use_it() -> None:
    svc = {"metadata": {"name": "a", "namespace": "team"}, "spec": {"baseRefs": [{"name": "mine"}]}}
    used = configs_used(svc, {"kserve-config-llm-template"})
    assert uses_config(svc, used, "mine", "team", "kserve")  # a baseRef, even before it existed
    assert uses_config(svc, used, "kserve-config-llm-template", "kserve", "kserve")
    assert uses_config(svc, used, "kserve-config-llm-template", "team", "kserve")  # an override
    assert not uses_config(svc, used, "mine", "elsewhere", "kserve")
    assert not uses_config(svc, used, "other", "team", "kserve")


def test_a_config_in_the_services_namespace_wins_over_the_system_ones() -> None:
    def cfg(ns: str | None, image: str) -> Any:
        meta: JSON = {"name": "c"} if ns is None else {"name": "c", "namespace": ns}
        doc = {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceServiceConfig",
               "metadata": meta, "spec": {"template": {"containers": [{"name": "main", "image": image}]}}}  # fmt: skip
        return parse_llm_config(yaml.safe_load(yaml.safe_dump(doc)))

    chosen = configs_for("team", [cfg("kserve", "sys"), cfg("team", "own"), cfg("other", "x")])
    assert chosen["c"].metadata.namespace == "team"
    assert configs_for("nobody", [cfg("other", "x")]) == {}


def test_a_leader_worker_set_is_ready_when_its_groups_are() -> None:
    from wharf_controller.llm_status import leader_worker_set_ready

    lws = {"spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
    assert not leader_worker_set_ready(lws)
    assert leader_worker_set_ready({**lws, "status": {"readyReplicas": 2}})
    available = {"conditions": [{"type": "Available", "status": "True"}]}
    assert leader_worker_set_ready({**lws, "status": available})
    assert not leader_worker_set_ready({"spec": {"replicas": 0}, "status": available})
    assert not leader_worker_set_ready(None)


def _env(deployment: JSON) -> list[JSON]:
    env: list[JSON] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def test_tracing_reaches_the_router_and_the_engines_as_one_trace() -> None:
    doc = _example("llm-pd.yaml")
    doc["spec"]["tracing"] = {"exporterEndpoint": "http://collector:4317", "sampler": "always_on"}
    _, _, objects = _render(doc)
    by = _by(objects)
    router = _env(by[("Deployment", "qwen-pd-kserve-router-scheduler")])
    decode = _env(by[("Deployment", "qwen-pd-kserve")])
    values = {e["name"]: e.get("value") for e in router}
    assert values["OTEL_SERVICE_NAME"] == "inference-scheduler"
    assert {e["name"]: e.get("value") for e in decode}["OTEL_SERVICE_NAME"] == (
        "inference-server-decode"
    )
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_EXPORTER"):
        assert values[name] == {e["name"]: e.get("value") for e in decode}[name]
    assert values["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317"
    for env in (router, decode):
        # Kubernetes expands $(VAR) only for a variable defined before the one that uses it
        names = [e["name"] for e in env]
        assert names.index("OTEL_RESOURCE_ATTRIBUTES_POD_NAME") < names.index(
            "OTEL_RESOURCE_ATTRIBUTES"
        )
    # Wharf's gateway reads only the environment: no --tracing flag it would refuse
    command = by[("Deployment", "qwen-pd-kserve-router-scheduler")]["spec"]["template"]["spec"][
        "containers"
    ][0]["command"]
    assert not any(a.startswith("--tracing") for a in command)


def test_without_tracing_the_router_has_no_otel_env() -> None:
    _, _, objects = _render(_example("llm-pd.yaml"))
    router = _by(objects)[("Deployment", "qwen-pd-kserve-router-scheduler")]
    container = router["spec"]["template"]["spec"]["containers"][0]
    assert not any(e["name"].startswith("OTEL_") for e in container.get("env") or [])
