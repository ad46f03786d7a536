"""The LLM plan: presets chosen by shape, merged in KServe's order, workloads and router."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api import parse_object
from wharf_api.config import from_mapping
from wharf_api.llm import (
    LLMPlanError,
    builtin_configs,
    plan_llm_inference_service,
    well_known_config_names,
)
from wharf_api.resources import LLMInferenceService, LLMInferenceServiceConfig


def svc(spec: dict[str, Any], status: dict[str, Any] | None = None) -> LLMInferenceService:
    doc: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService",
        "metadata": {"name": "llm", "namespace": "team"},
        "spec": {"model": {"uri": "hf://org/m", "name": "org/m"}, **spec},
    }
    if status is not None:
        doc["status"] = status
    obj = parse_object(doc)
    assert isinstance(obj, LLMInferenceService)
    return obj


def cfg(name: str, spec: dict[str, Any], namespace: str = "team") -> LLMInferenceServiceConfig:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha2",
            "kind": "LLMInferenceServiceConfig",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )
    assert isinstance(obj, LLMInferenceServiceConfig)
    return obj


WORKER = {"containers": [{"name": "main"}]}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, ["config-llm-template"]),
        ({"prefill": {}}, ["config-llm-prefill-template", "config-llm-decode-template"]),
        (
            {"worker": WORKER, "parallelism": {"data": 4, "dataLocal": 2}},
            ["config-llm-worker-data-parallel"],
        ),
        (
            {"worker": WORKER, "parallelism": {"pipeline": 2}},
            ["config-llm-worker-pipeline-parallel"],
        ),
        (
            {"prefill": {"worker": WORKER, "parallelism": {"data": 2, "dataLocal": 1}}},
            ["config-llm-prefill-worker-data-parallel", "config-llm-decode-template"],
        ),
        (
            {
                "prefill": {},
                "worker": WORKER,
                "parallelism": {"pipeline": 2},
            },
            ["config-llm-prefill-template", "config-llm-decode-worker-pipeline-parallel"],
        ),
        (
            {"router": {"route": {}, "gateway": {}, "scheduler": {}}, "tracing": {}},
            [
                "config-llm-scheduler",
                "config-llm-router-route",
                "config-llm-tracing",
                "config-llm-template",
            ],
        ),
        (
            {
                "router": {
                    "scheduler": {
                        "config": {
                            "inline": {
                                "plugins": [
                                    {"type": "token-producer"},
                                    {"type": "predicted-latency-producer"},
                                ]
                            }
                        }
                    }
                }
            },
            [
                "config-llm-scheduler",
                "config-llm-tokenizer",
                "config-llm-scheduler-latency-predictor",
                "config-llm-template",
            ],
        ),
        (
            {"router": {"scheduler": {"tokenizer": {}}}},
            ["config-llm-scheduler", "config-llm-tokenizer", "config-llm-template"],
        ),
        # a route the user owns and a pool the user names need no preset
        (
            {
                "router": {
                    "route": {"http": {"refs": [{"name": "mine"}]}},
                    "scheduler": {"pool": {"ref": {"name": "p"}}},
                }
            },
            ["config-llm-template"],
        ),
    ],
)
def test_well_known_configs_follow_the_shape(spec: dict[str, Any], expected: list[str]) -> None:
    assert well_known_config_names(svc(spec).spec) == expected


def test_single_node_plan() -> None:
    plan = plan_llm_inference_service(svc({"replicas": 2, "args": []}), {})
    assert [a.name for a in plan.applied_configs] == ["kserve-config-llm-template"]
    assert plan.applied_configs[0].source == "Preset"
    assert plan.applied_configs[0].namespace == "kserve"
    (main,) = plan.workloads
    assert (main.name, main.kind, main.role, main.replicas, main.size) == (
        "llm-kserve",
        "Deployment",
        "both",
        2,
        1,
    )
    assert main.leader is not None and main.worker is None
    assert main.leader.main.command == (
        "wharf-llm-worker", "--role", "both", "--model", "/mnt/models",
        "--served-model-name", "org/m", "--host", "0.0.0.0", "--port", "8000",
        "--drain-timeout", "55", "--",
    )  # fmt: skip
    assert main.engine.port == 8000 and main.engine.served_model_names == ("org/m",)
    assert [(s.uri, s.mount_path) for s in plan.storage] == [("hf://org/m", "/mnt/models")]
    assert plan.host == "llm-team.example.com"
    assert plan.router is None


def test_model_name_defaults_to_the_service_name() -> None:
    obj = svc({})
    assert obj.spec.model is not None
    obj.spec.model.name = None
    plan = plan_llm_inference_service(obj, {})
    assert plan.model_name == "llm"
    assert plan.main.engine.served_model_names == ("llm",)


def test_pd_plan_has_a_decode_main_and_a_prefill_pool() -> None:
    plan = plan_llm_inference_service(svc({"prefill": {"replicas": 3}}), {})
    decode, prefill = plan.workloads
    assert (decode.component, decode.role, decode.name) == ("main", "decode", "llm-kserve")
    assert (prefill.component, prefill.role, prefill.name, prefill.replicas) == (
        "prefill",
        "prefill",
        "llm-kserve-prefill",
        3,
    )
    assert prefill.leader is not None
    assert prefill.leader.main.command[:3] == ("wharf-llm-worker", "--role", "prefill")
    assert "--kv-transfer" in prefill.leader.main.command
    assert decode.labels["llm-d.ai/role"] == "decode"
    assert plan.prefill is prefill


def test_pd_workers_advertise_their_pod_ip_for_the_kv_hand_off() -> None:
    # The other side connects to the host the NIXL side channel advertises (vLLM's default,
    # localhost, is only right when both pods share one machine).
    pod_ip = {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}
    pd = plan_llm_inference_service(svc({"prefill": {"replicas": 1}}), {})
    for workload in pd.workloads:
        assert workload.leader is not None
        assert dict(workload.leader.main.env_refs)["VLLM_NIXL_SIDE_CHANNEL_HOST"] == pod_ip
    single = plan_llm_inference_service(svc({}), {})
    (only,) = single.workloads
    assert only.leader is not None
    assert "VLLM_NIXL_SIDE_CHANNEL_HOST" not in dict(only.leader.main.env_refs)


def test_multi_node_plan_is_a_leader_worker_set() -> None:
    spec = {"worker": {}, "parallelism": {"tensor": 2, "pipeline": 2}, "replicas": 1}
    plan = plan_llm_inference_service(svc(spec), {})
    main = plan.main
    assert (main.kind, main.name, main.size) == ("LeaderWorkerSet", "llm-kserve-mn", 2)
    assert main.leader is not None and main.worker is not None
    for pod in (main.leader, main.worker):
        # every pod runs one node of the group; LWS_* in its environment say which
        assert pod.main.command[:2] == ("wharf-llm-worker", "multinode")
        assert not any("$(" in part for part in pod.main.command)
        assert pod.main.args[:4] == ("--tensor-parallel-size", "2", "--pipeline-parallel-size", "2")
    assert main.worker_labels is not None and "llm-d.ai/role" not in main.worker_labels


def test_data_parallel_group_size_and_rpc_port() -> None:
    spec = {"worker": {}, "parallelism": {"data": 8, "dataLocal": 2, "dataRPCPort": 6000}}
    main = plan_llm_inference_service(svc(spec), {}).main
    assert main.size == 4
    assert main.parallelism is not None and main.parallelism.data_rpc_port == 6000
    assert "--data-parallel-rpc-port" in main.engine.engine_args


def test_user_args_win_over_engine_args() -> None:
    spec = {
        "parallelism": {"tensor": 2},
        "template": {
            "containers": [
                {"name": "main", "args": ["--tensor-parallel-size=4", "--max-model-len", "512"]}
            ]
        },
    }
    main = plan_llm_inference_service(svc(spec), {}).main
    assert main.engine.engine_args == ("--tensor-parallel-size=4", "--max-model-len", "512")


def test_baserefs_come_after_presets_and_the_service_last() -> None:
    configs = {
        "gpu": cfg(
            "gpu",
            {
                "template": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "gpu-image",
                            "env": [{"name": "A", "value": "gpu"}],
                        }
                    ]
                }
            },
        ),
        "more": cfg(
            "more",
            {
                "template": {
                    "containers": [{"name": "main", "env": [{"name": "A", "value": "more"}]}]
                }
            },
        ),
    }
    spec = {
        "baseRefs": [{"name": "gpu"}, {"name": "more"}],
        "template": {"containers": [{"name": "main", "env": [{"name": "B", "value": "own"}]}]},
    }
    plan = plan_llm_inference_service(svc(spec), configs)
    assert [(a.name, a.source) for a in plan.applied_configs] == [
        ("kserve-config-llm-template", "Preset"),
        ("gpu", "UserRef"),
        ("more", "UserRef"),
    ]
    main = plan.main.leader
    assert main is not None
    assert main.main.image == "gpu-image"
    assert main.main.env == (("B", "own"), ("A", "more"))


def test_a_baseref_can_change_the_shape_and_the_model_name() -> None:
    configs = {"pd": cfg("pd", {"prefill": {"replicas": 1}, "model": {"name": "from-config"}})}
    plan = plan_llm_inference_service(svc({"baseRefs": [{"name": "pd"}]}), configs)
    # KServe: the baseRef's model name wins over the service's, in templates and in the spec
    assert plan.model_name == "from-config"
    assert [w.role for w in plan.workloads] == ["decode", "prefill"]
    assert plan.main.engine.served_model_names == ("from-config",)


def test_a_config_of_the_same_name_replaces_the_builtin_preset() -> None:
    mine = cfg(
        "kserve-config-llm-template",
        {
            "template": {
                "containers": [
                    {
                        "name": "main",
                        "image": "vllm",
                        "command": ["vllm", "serve", "/mnt/models"],
                        "args": ["--served-model-name", "{{ .Spec.Model.Name }}"],
                        "ports": [{"containerPort": 8001}],
                    }
                ]
            }
        },
    )
    plan = plan_llm_inference_service(svc({}), {"kserve-config-llm-template": mine})
    main = plan.main
    assert main.leader is not None
    assert main.leader.main.command == ("vllm", "serve", "/mnt/models")
    assert main.engine.worker is False and main.engine.port == 8001
    assert main.serving_port == 8001
    assert main.engine.engine_args == ("--served-model-name", "org/m")
    assert plan.applied_configs[0].namespace == "team"


def test_a_pinned_well_known_name_is_used() -> None:
    pinned = cfg(
        "v1-config-llm-template",
        {"template": {"containers": [{"name": "main", "image": "pinned", "command": ["x"]}]}},
    )
    status = {"annotations": {"serving.kserve.io/config-llm-template": "v1-config-llm-template"}}
    plan = plan_llm_inference_service(svc({}, status), {"v1-config-llm-template": pinned})
    assert plan.applied_configs[0].name == "v1-config-llm-template"
    # the controller writes these back: existing pins kept, the others pinned to today's names
    assert (
        plan.status_annotations["serving.kserve.io/config-llm-template"] == "v1-config-llm-template"
    )
    assert (
        plan.status_annotations["serving.kserve.io/config-llm-scheduler"]
        == "kserve-config-llm-scheduler"
    )


def test_router_route_follows_gateway_refs_and_points_at_the_service_without_scheduler() -> None:
    spec = {"router": {"route": {}, "gateway": {"refs": [{"name": "gw", "namespace": "infra"}]}}}
    plan = plan_llm_inference_service(svc(spec), {})
    assert plan.router is not None and plan.router.route is not None
    http = plan.router.route.http_spec
    assert http is not None
    assert http["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "gw",
            "namespace": "infra",
        }
    ]
    backends = [b for rule in http["rules"] for b in rule["backendRefs"]]
    assert {(b["kind"], b["name"]) for b in backends} == {("Service", "llm-kserve-workload-svc")}
    paths = [rule["matches"][0]["path"]["value"] for rule in http["rules"]]
    assert "/team/llm/v1/chat/completions" in paths
    assert plan.router.scheduler is None


def test_scheduler_defaults_follow_the_shape() -> None:
    plan = plan_llm_inference_service(svc({"router": {"scheduler": {}}, "prefill": {}}), {})
    assert plan.router is not None and plan.router.scheduler is not None
    scheduler = plan.router.scheduler
    assert scheduler.pool_name == "llm-inference-pool"
    assert scheduler.config is not None
    assert [p["name"] for p in scheduler.config["schedulingProfiles"]] == ["prefill", "decode"]
    assert scheduler.pod is not None and scheduler.pod.service_account_name == "llm-epp-sa"
    inline = {"plugins": [{"type": "queue-scorer"}]}
    plan = plan_llm_inference_service(
        svc({"router": {"scheduler": {"config": {"inline": inline}}}}), {}
    )
    assert plan.router is not None and plan.router.scheduler is not None
    assert plan.router.scheduler.config == inline


def test_global_config_comes_from_the_ingress_config() -> None:
    config = from_mapping(
        {"ingress": {"kserveIngressGateway": "gw-ns/gw", "enableLLMInferenceServiceTLS": True}}
    )
    tls = cfg(
        "tls",
        {
            "template": {
                "containers": [
                    {
                        "name": "main",
                        "args": [
                            "{{ if .GlobalConfig.EnableTLS }}--ssl{{ end }}",
                            "{{ .GlobalConfig.IngressGatewayNamespace }}",
                        ],
                    }
                ]
            }
        },
    )
    plan = plan_llm_inference_service(
        svc({"baseRefs": [{"name": "tls"}]}), {"tls": tls}, config=config
    )
    assert plan.main.engine.engine_args == ("--ssl", "gw-ns")


def test_storage_initializer_disabled_skips_the_download() -> None:
    plan = plan_llm_inference_service(svc({"storageInitializer": {"enabled": False}}), {})
    assert plan.storage == () and plan.storage_initializer is False


def test_lora_adapters_are_mounted_and_passed_to_the_engine() -> None:
    model = {
        "uri": "hf://org/m",
        "name": "org/m",
        "lora": {
            "adapters": [{"uri": "hf://org/b", "name": "b"}, {"uri": "s3://x/a", "name": "a"}],
            "maxRank": 8,
        },
    }
    plan = plan_llm_inference_service(svc({"model": model}), {})
    assert [(s.kind, s.mount_path) for s in plan.storage] == [
        ("model", "/mnt/models"), ("lora", "/mnt/lora/a"), ("lora", "/mnt/lora/b")
    ]  # fmt: skip
    # the worker owns --lora-modules: adapters are its --lora flags, limits go to vLLM
    assert plan.main.leader is not None
    command = plan.main.leader.main.command
    assert command[-5:] == ("--lora", "a=/mnt/lora/a", "--lora", "b=/mnt/lora/b", "--")
    assert plan.main.engine.engine_args == ("--max-lora-rank=8",)


# ---- errors name the object and the field ------------------------------------------------


def expect_error(
    spec: dict[str, Any], field: str, message: str, configs: dict[str, Any] | None = None
) -> LLMPlanError:
    with pytest.raises(LLMPlanError, match=message) as info:
        plan_llm_inference_service(svc(spec), configs or {})
    assert info.value.field_path == field, str(info.value)
    return info.value


def test_unknown_baseref_is_named() -> None:
    err = expect_error(
        {"baseRefs": [{"name": "nope"}]}, "spec.baseRefs[0].name", "'nope' not found"
    )
    assert err.where == "LLMInferenceService team/llm"


def test_prefill_without_a_decode_template() -> None:
    empty_decode = cfg("kserve-config-llm-decode-template", {})
    expect_error(
        {"prefill": {}}, "spec.template", "decode workload has no pod template",
        {"kserve-config-llm-decode-template": empty_decode},
    )  # fmt: skip


def test_multi_node_data_parallel_without_worker() -> None:
    expect_error({"parallelism": {"data": 4, "dataLocal": 1}}, "spec.worker", "needs 4 nodes")


def test_worker_without_data_or_pipeline_parallelism() -> None:
    expect_error(
        {"worker": WORKER, "parallelism": {"tensor": 2}},
        "spec.worker",
        "parallelism must be configured",
    )
    expect_error(
        {"prefill": {"worker": WORKER, "parallelism": {"data": 2}}},
        "spec.prefill.parallelism.dataLocal",
        "dataLocal must be set when data is set",
    )


def test_template_errors_name_the_config_and_the_field() -> None:
    bad = cfg("bad", {"template": {"containers": [{"name": "main", "args": ["{{ .Spec.Nope }}"]}]}})
    with pytest.raises(LLMPlanError) as info:
        plan_llm_inference_service(svc({"baseRefs": [{"name": "bad"}]}), {"bad": bad})
    assert info.value.where == "LLMInferenceServiceConfig bad"
    assert info.value.field_path == "spec.template.containers[0].args[0]"
    assert "can't evaluate field Nope" in str(info.value)


def test_model_uri_is_required_and_its_scheme_known() -> None:
    expect_error({"model": {"name": "x"}}, "spec.model.uri", "is required")
    expect_error({"model": {"uri": "ftp://x/y"}}, "spec.model.uri", "unsupported scheme 'ftp'")


def test_lora_errors() -> None:
    lora = {"adapters": [{"uri": "oci://x/y", "name": "a"}]}
    expect_error(
        {"model": {"uri": "hf://o/m", "lora": lora}},
        "spec.model.lora.adapters[0].uri",
        "unsupported URI",
    )
    lora = {"adapters": [{"uri": "hf://x/y", "name": "org/m"}]}
    expect_error(
        {"model": {"uri": "hf://o/m", "name": "org/m", "lora": lora}},
        "spec.model.lora.adapters[0].name",
        "differ from base model",
    )


def test_builtin_presets_are_valid_configs_under_kserve_names() -> None:
    configs = builtin_configs()
    assert "kserve-config-llm-template" in configs
    assert all(c.metadata.namespace == "kserve" for c in configs.values())
    assert set(builtin_configs("custom-")) == {
        "custom-" + n.removeprefix("kserve-") for n in configs
    }


def test_tracing_adds_the_preset_endpoint_and_otel_env() -> None:
    plan = plan_llm_inference_service(svc({"tracing": {}, "prefill": {}}), {})
    assert plan.tracing is not None
    assert plan.tracing["exporterEndpoint"] == "http://otel-collector:4317"
    for workload, service in (
        (plan.main, "inference-server-decode"),
        (plan.workloads[1], "inference-server-prefill"),
    ):
        assert workload.leader is not None
        main = workload.leader.main
        assert main.args[-4:] == (
            "--otlp-traces-endpoint", "http://otel-collector:4317", "--collect-detailed-traces", "all"
        )  # fmt: skip
        assert dict(main.env)["OTEL_SERVICE_NAME"] == service
        assert dict(main.env_refs)["OTEL_RESOURCE_ATTRIBUTES_POD_NAME"] == {
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
        }


def test_revision_key_ignores_replicas_but_not_the_pod() -> None:
    one = plan_llm_inference_service(svc({"replicas": 1}), {}).main
    two = plan_llm_inference_service(svc({"replicas": 2}), {}).main
    args = plan_llm_inference_service(
        svc({"template": {"containers": [{"name": "main", "args": ["--x"]}]}}), {}
    ).main
    assert one.revision_key() == two.revision_key()
    assert one.revision_key() != args.revision_key()


def test_a_routing_sidecar_is_the_serving_port() -> None:
    sidecar = {"name": "router", "restartPolicy": "Always", "ports": [{"containerPort": 8000}]}
    decode = cfg(
        "kserve-config-llm-decode-template",
        {
            "template": {
                "initContainers": [sidecar],
                "containers": [
                    {"name": "main", "command": ["vllm"], "ports": [{"containerPort": 8001}]}
                ],
            }
        },
    )
    plan = plan_llm_inference_service(
        svc({"prefill": {}}), {"kserve-config-llm-decode-template": decode}
    )
    assert (plan.main.engine.port, plan.main.serving_port) == (8001, 8000)
    assert plan.workloads[1].serving_port == 8000


def test_drain_timeout_follows_each_pods_grace_period() -> None:
    spec = {
        "template": {"terminationGracePeriodSeconds": 30, "containers": [{"name": "main"}]},
        "prefill": {
            "template": {"terminationGracePeriodSeconds": 120, "containers": [{"name": "main"}]}
        },
    }
    plan = plan_llm_inference_service(svc(spec), {})
    decode, prefill = (w.leader for w in plan.workloads)
    assert decode is not None and prefill is not None
    # KServe's shutdownTimeout: grace period less min(5, grace) for the signal and the exit
    assert decode.main.command[decode.main.command.index("--drain-timeout") + 1] == "25"
    assert prefill.main.command[prefill.main.command.index("--drain-timeout") + 1] == "115"
    assert decode.termination_grace_period_seconds == 30
