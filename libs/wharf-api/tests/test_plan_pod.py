"""What a plan carries for a pod: resources, ports, mounts, env with valueFrom, pod fields,
autoscaling, workerSpec, and batcher/logger as Wharf model-server flags."""

from __future__ import annotations

from typing import Any

from wharf_api import default, parse_object
from wharf_api.config import InferenceServiceConfig, from_configmap_data
from wharf_api.plan import arg_value, plan_inference_service
from wharf_api.resources import ClusterServingRuntime, InferenceService


def runtime(command: str = "wharf-model-server", **extra: Any) -> ClusterServingRuntime:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ClusterServingRuntime",
            "metadata": {"name": "rt"},
            "spec": {
                "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": "img",
                        "command": [command],
                        "args": ["--model_dir=/mnt/models"],
                        "env": [
                            {"name": "A", "value": "runtime"},
                            {
                                "name": "TOKEN",
                                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                            },
                        ],
                        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    }
                ],
                **extra,
            },
        }
    )
    assert isinstance(obj, ClusterServingRuntime)
    return obj


def isvc(predictor: dict[str, Any]) -> InferenceService:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "iris", "namespace": "team"},
            "spec": {"predictor": predictor},
        }
    )
    assert isinstance(obj, InferenceService)
    return default(obj)


MODEL = {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/iris"}


def test_container_keeps_resources_ports_mounts_and_env_refs() -> None:
    pred = {
        "model": {
            **MODEL,
            "env": [{"name": "A", "value": "isvc"}, {"name": "B", "value": "b"}],
            "resources": {"limits": {"cpu": "2"}},
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
        }
    }
    c = plan_inference_service(isvc(pred), cluster_runtimes=[runtime()]).components[0].container
    assert dict(c.env) == {"A": "isvc", "B": "b"}
    assert c.env_refs == (("TOKEN", {"secretKeyRef": {"name": "s", "key": "k"}}),)
    assert c.resources == {"limits": {"cpu": "2"}}
    assert c.ports == ({"containerPort": 8080, "protocol": "TCP"},)
    assert c.volume_mounts == ({"name": "cache", "mountPath": "/cache"},)


def test_pod_fields_are_carried() -> None:
    pred = {
        "model": MODEL,
        "serviceAccountName": "sa",
        "nodeSelector": {"gpu": "a100"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"x": 1}},
        "imagePullSecrets": [{"name": "regcred"}],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "schedulerName": "volcano",
        "labels": {"team": "a"},
        "annotations": {"note": "b"},
    }
    pod = plan_inference_service(isvc(pred), cluster_runtimes=[runtime()]).components[0].pod
    assert pod.service_account_name == "sa"
    assert pod.node_selector == {"gpu": "a100"}
    assert pod.tolerations == ({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},)
    assert pod.affinity == {"nodeAffinity": {"x": 1}}
    assert pod.image_pull_secrets == ("regcred",)
    assert pod.volumes == ({"name": "cache", "emptyDir": {}},)
    assert pod.labels == {"team": "a"}
    assert pod.annotations == {"note": "b"}
    assert pod.extra == {"schedulerName": "volcano"}


def test_autoscaling_settings_are_carried() -> None:
    pred = {
        "model": MODEL,
        "minReplicas": 2,
        "maxReplicas": 1,
        "scaleMetric": "cpu",
        "scaleMetricType": "Utilization",
        "autoScaling": {
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 60},
                    },
                }
            ]
        },
    }
    s = plan_inference_service(isvc(pred), cluster_runtimes=[runtime()]).components[0].scaling
    # KServe raises a maxReplicas below minReplicas to minReplicas
    assert (s.min_replicas, s.max_replicas, s.metric, s.metric_type) == (2, 2, "cpu", "Utilization")
    assert s.target == 80  # Knative/HPA default cpu target
    assert s.auto_scaling is not None
    assert s.auto_scaling["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_scale_targets_come_from_the_config() -> None:
    cfg = InferenceServiceConfig.model_validate({"autoscaler": {"concurrencyTarget": 7}})
    s = plan_inference_service(isvc({"model": MODEL}), cluster_runtimes=[runtime()], config=cfg)
    assert s.components[0].scaling.target == 7


def test_worker_spec_is_carried() -> None:
    pred = {
        "model": MODEL,
        "workerSpec": {
            "pipelineParallelSize": 2,
            "tensorParallelSize": 4,
            "nodeSelector": {"pool": "gpu"},
            "containers": [{"name": "worker-container", "image": "w", "args": ["--x"]}],
        },
    }
    multi_node = runtime(workerSpec={"containers": [{"name": "worker-container", "image": "w"}]})
    worker = plan_inference_service(isvc(pred), cluster_runtimes=[multi_node]).components[0].worker
    assert worker is not None
    assert (worker.pipeline_parallel_size, worker.tensor_parallel_size) == (2, 4)
    assert worker.pod.node_selector == {"pool": "gpu"}
    assert worker.container is not None and worker.container.args == ("--x",)


def test_batcher_and_logger_become_model_server_flags() -> None:
    pred = {
        "model": MODEL,
        "batcher": {"maxBatchSize": 16, "maxLatency": 50},
        "logger": {"mode": "request"},
    }
    comp = plan_inference_service(isvc(pred), cluster_runtimes=[runtime()]).components[0]
    args = comp.container.args
    assert arg_value(args, "--enable_batcher") == "true"
    assert arg_value(args, "--max_batchsize") == "16"
    assert arg_value(args, "--max_latency") == "50"
    # logger.url defaults to the config's logger.defaultUrl, as KServe's agent does
    assert arg_value(args, "--log_url") == "http://default-broker"
    assert arg_value(args, "--log_mode") == "request"
    assert comp.batcher is not None and comp.batcher.max_batch_size == 16


def test_other_containers_get_no_in_process_flags() -> None:
    pred = {"model": MODEL, "batcher": {"maxBatchSize": 16}}
    comp = plan_inference_service(isvc(pred), cluster_runtimes=[runtime("my-server")]).components[0]
    assert arg_value(comp.container.args, "--enable_batcher") is None
    # the controller adds KServe's agent from this
    assert comp.batcher is not None


def test_a_pod_change_makes_a_new_revision_a_scaling_change_does_not() -> None:
    base = plan_inference_service(isvc({"model": MODEL}), cluster_runtimes=[runtime()])
    scaled = plan_inference_service(
        isvc({"model": MODEL, "maxReplicas": 5}), cluster_runtimes=[runtime()]
    )
    moved = plan_inference_service(
        isvc({"model": MODEL, "nodeSelector": {"a": "b"}}), cluster_runtimes=[runtime()]
    )
    key = base.components[0].revision_key()
    assert scaled.components[0].revision_key() == key
    assert moved.components[0].revision_key() != key


def test_ingress_config_shapes_the_url() -> None:
    cfg = from_configmap_data(
        {
            "ingress": '{"ingressDomain": "corp.dev", "urlScheme": "https", '
            '"domainTemplate": "{{ .Name }}.{{ .Namespace }}.{{ .IngressDomain }}"}'
        }
    )
    plan = plan_inference_service(isvc({"model": MODEL}), cluster_runtimes=[runtime()], config=cfg)
    assert plan.url == "https://iris.team.corp.dev"
