"""KServe's `inferenceservice-config` ConfigMap as a typed model, with KServe's defaults.

The ConfigMap holds one JSON document per key (`ingress`, `deploy`, `storageInitializer`,
`credentials`, `logger`, `batcher`, `agent`, `router`, `localModel`, `autoscaler`, ...). The
controller reads it from the cluster (`from_configmap_data`); `wharf up` reads an optional file
(`from_file`, either the ConfigMap manifest itself or a mapping of the same keys to objects).
Keys and fields this model does not know are kept, so a newer ConfigMap round-trips. Pure
except `from_file`, which reads the one file it is given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from wharf_api.names import DEFAULT_DOMAIN, DEFAULT_DOMAIN_TEMPLATE

CONFIGMAP_NAME = "inferenceservice-config"
CONFIGMAP_NAMESPACE = "kserve"


class ConfigError(ValueError):
    """The configuration cannot be read; the message names the key (and the file)."""


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="allow", populate_by_name=True, alias_generator=to_camel, serialize_by_alias=True
    )


class _Sidecar(_Section):
    """An image KServe runs beside or before the model, with its requests and limits."""

    # KServe's `agent`, `logger` and `batcher` keys name its agent sidecar (payload logger,
    # batcher, model puller). Wharf's model server does that work in-process, so these keys
    # name the model-server image: one that exists and follows ghcr.io/wharf-serving/<service>.
    image: str = "ghcr.io/wharf-serving/model-server:0.1.0"
    memory_request: str = "100Mi"
    memory_limit: str = "1Gi"
    cpu_request: str = "100m"
    cpu_limit: str = "1"


class IngressConfig(_Section):
    enable_gateway_api: bool = False
    kserve_ingress_gateway: str = "kserve/kserve-ingress-gateway"
    ingress_gateway: str = "knative-serving/knative-ingress-gateway"
    local_gateway: str = "knative-serving/knative-local-gateway"
    local_gateway_service: str = "knative-local-gateway.istio-system.svc.cluster.local"
    ingress_domain: str = DEFAULT_DOMAIN
    additional_ingress_domains: list[str] = Field(default_factory=list)
    ingress_class_name: str = "istio"
    domain_template: str = DEFAULT_DOMAIN_TEMPLATE
    url_scheme: str = "http"
    disable_istio_virtual_host: bool = False
    disable_ingress_creation: bool = False
    disable_http_route_timeout: bool = False
    path_template: str = ""


class DeployConfig(_Section):
    default_deployment_mode: str = "Knative"
    service_annotation_disallowed_list: list[str] = Field(default_factory=list)
    service_label_disallowed_list: list[str] = Field(default_factory=list)


class StorageInitializerConfig(_Sidecar):
    image: str = "ghcr.io/wharf-serving/storage-initializer:0.1.0"
    ca_bundle_config_map_name: str = ""
    ca_bundle_volume_mount_path: str = "/etc/ssl/custom-certs"
    enable_direct_pvc_volume_mount: bool = True
    enable_modelcar: bool = True
    cpu_modelcar: str = "10m"
    memory_modelcar: str = "15Mi"
    uid_modelcar: int | None = None


class S3Credentials(_Section):
    s3_access_key_id_name: str = Field("AWS_ACCESS_KEY_ID", alias="s3AccessKeyIDName")
    s3_secret_access_key_name: str = Field("AWS_SECRET_ACCESS_KEY", alias="s3SecretAccessKeyName")
    s3_endpoint: str = ""
    s3_use_https: str = ""
    s3_region: str = ""
    s3_verify_ssl: str = Field("", alias="s3VerifySSL")
    s3_use_virtual_bucket: str = ""
    s3_use_accelerate: str = ""
    s3_use_anonymous_credential: str = ""
    s3_ca_bundle: str = Field("", alias="s3CABundle")


class GcsCredentials(_Section):
    gcs_credential_file_name: str = "gcloud-application-credentials.json"


class CredentialsConfig(_Section):
    storage_spec_secret_name: str = "storage-config"
    storage_secret_name_annotation: str = "serving.kserve.io/storageSecretName"
    gcs: GcsCredentials = Field(default_factory=GcsCredentials)
    s3: S3Credentials = Field(default_factory=S3Credentials)


class LoggerConfig(_Sidecar):
    default_url: str = "http://default-broker"


class BatcherConfig(_Sidecar):
    memory_request: str = "1Gi"
    cpu_request: str = "1"
    max_batch_size: str = "32"
    max_latency: str = "5000"


class AgentConfig(_Sidecar):
    pass


class RouterHeaders(_Section):
    propagate: list[str] = Field(default_factory=list)


class RouterConfig(_Sidecar):
    image: str = "ghcr.io/wharf-serving/router:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    headers: RouterHeaders = Field(default_factory=RouterHeaders)


class LocalModelConfig(_Section):
    enabled: bool = False
    job_namespace: str = "kserve-localmodel-jobs"
    default_job_image: str = "ghcr.io/wharf-serving/storage-initializer:0.1.0"
    fs_group: int = 1000
    job_ttl_seconds_after_finished: int = 3600
    reconcilation_frequency_in_secs: int = 60
    disable_volume_management: bool = False


class SecurityConfig(_Section):
    auto_mount_service_account_token: bool = True


class MetricsAggregatorConfig(_Section):
    enable_metric_aggregation: str = "false"
    enable_prometheus_scraping: str = "false"


class ResourceDefaults(_Section):
    cpu_request: str = "1"
    cpu_limit: str = "1"
    memory_request: str = "2Gi"
    memory_limit: str = "2Gi"


class InferenceServiceDefaults(_Section):
    resource: ResourceDefaults = Field(default_factory=ResourceDefaults)


class AutoscalerConfig(_Section):
    # Knative's targets, used where KServe leaves the choice to Knative (KPA)
    concurrency_target: int = 100
    rps_target: int = 200
    cpu_target: int = 80
    memory_target: int = 80
    scale_up_stabilization_window_seconds: str = "0"
    scale_down_stabilization_window_seconds: str = "300"


class InferenceServiceConfig(_Section):
    """The whole ConfigMap. Every key has KServe's default when absent."""

    ingress: IngressConfig = Field(default_factory=IngressConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    storage_initializer: StorageInitializerConfig = Field(default_factory=StorageInitializerConfig)
    credentials: CredentialsConfig = Field(default_factory=CredentialsConfig)
    logger: LoggerConfig = Field(default_factory=LoggerConfig)
    batcher: BatcherConfig = Field(default_factory=BatcherConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    local_model: LocalModelConfig = Field(default_factory=LocalModelConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    metrics_aggregator: MetricsAggregatorConfig = Field(default_factory=MetricsAggregatorConfig)
    inference_service: InferenceServiceDefaults = Field(default_factory=InferenceServiceDefaults)
    autoscaler: AutoscalerConfig = Field(default_factory=AutoscalerConfig)

    def scale_target(self, metric: str) -> int:
        """The default target of an autoscaling metric (`concurrency`, `rps`, `cpu`, `memory`)."""
        table = {
            "concurrency": self.autoscaler.concurrency_target,
            "rps": self.autoscaler.rps_target,
            "cpu": self.autoscaler.cpu_target,
            "memory": self.autoscaler.memory_target,
        }
        return table.get(metric, self.autoscaler.concurrency_target)


def _validated(raw: Mapping[str, Any], where: str) -> InferenceServiceConfig:
    try:
        return InferenceServiceConfig.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {path}: {first['msg']}") from None


def from_configmap_data(
    data: Mapping[str, str], where: str = CONFIGMAP_NAME
) -> InferenceServiceConfig:
    """The config from a ConfigMap's `data`: each key a JSON document (`_example` ignored)."""
    parsed: dict[str, Any] = {}
    for key, text in data.items():
        if key.startswith("_"):
            continue
        try:
            parsed[key] = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: data.{key}: not JSON ({exc.msg})") from None
    return _validated(parsed, where)


def from_mapping(doc: Mapping[str, Any], where: str = CONFIGMAP_NAME) -> InferenceServiceConfig:
    """The config from a ConfigMap manifest or from a plain mapping of keys to objects."""
    if doc.get("kind") == "ConfigMap":
        data = doc.get("data") or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: data: expected a mapping")
        return from_configmap_data(data, where)
    return _validated(doc, where)


def from_file(path: Path) -> InferenceServiceConfig:
    """The config in a YAML or JSON file (see `from_mapping`); errors name the file."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if doc is None:
        return InferenceServiceConfig()
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return from_mapping(doc, str(path))


def to_configmap_data(config: InferenceServiceConfig) -> dict[str, str]:
    """The ConfigMap `data` for a config (what `deploy/base/config` ships)."""
    dumped = config.model_dump(mode="json", by_alias=True)
    return {k: json.dumps(v, indent=2, sort_keys=True) for k, v in dumped.items()}
