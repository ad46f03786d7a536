"""Kubernetes types embedded in Wharf resources (Container, PodSpec fields, resources, ...).

They are typed where Wharf reads them and open for every other field, so a manifest written for
KServe keeps every Kubernetes field it sets. Their CRD schema is never derived from these classes:
CRD generation replaces each one by Kubernetes' own OpenAPI definition named in
`k8s_definition` (see `wharf_api.crdgen`), for the Kubernetes minor pinned there.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from wharf_api.quantity import Quantity

# The JSON-schema key that tells CRD generation which Kubernetes definition replaces a model.
K8S_DEFINITION_KEY = "x-wharf-k8s-definition"


class K8sObject(BaseModel):
    """Base for an embedded Kubernetes type: unknown fields are kept as they are."""

    model_config = ConfigDict(
        extra="allow", populate_by_name=True, alias_generator=to_camel, serialize_by_alias=True
    )
    k8s_definition: ClassVar[str] = ""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if cls.k8s_definition:
            handler.resolve_ref_schema(schema)[K8S_DEFINITION_KEY] = cls.k8s_definition
        return schema


class EnvVar(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.EnvVar"
    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = None


class ContainerPort(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.ContainerPort"
    container_port: int
    name: str | None = None
    protocol: str | None = None


class ResourceRequirements(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.ResourceRequirements"
    # Quantities in canonical form: `cpu: 0.1` reads back as "100m", as the API server prints it.
    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class VolumeMount(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.VolumeMount"
    name: str
    mount_path: str
    read_only: bool | None = None
    sub_path: str | None = None


class Volume(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.Volume"
    name: str


class ContainerFields(BaseModel):
    """The Container fields Wharf reads, for types that are or inline a Container."""

    name: str | None = None
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] | None = None
    ports: list[ContainerPort] | None = None
    resources: ResourceRequirements | None = None
    volume_mounts: list[VolumeMount] | None = None


class Container(K8sObject, ContainerFields):
    k8s_definition = "io.k8s.api.core.v1.Container"


class Toleration(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.Toleration"


class Affinity(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.Affinity"


class LocalObjectReference(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.LocalObjectReference"
    name: str | None = None


class TopologySpreadConstraint(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.TopologySpreadConstraint"


class PodSecurityContext(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.PodSecurityContext"


class PodResourceClaim(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.PodResourceClaim"


class PodFields(BaseModel):
    """The PodSpec fields Wharf reads, for types that are or inline a PodSpec."""

    containers: list[Container] | None = None
    init_containers: list[Container] | None = None
    volumes: list[Volume] | None = None
    service_account_name: str | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[Toleration] | None = None
    affinity: Affinity | None = None


class PodSpec(K8sObject, PodFields):
    k8s_definition = "io.k8s.api.core.v1.PodSpec"


class PersistentVolumeSpec(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.PersistentVolumeSpec"


class PersistentVolumeClaimSpec(K8sObject):
    k8s_definition = "io.k8s.api.core.v1.PersistentVolumeClaimSpec"


class DeploymentStrategy(K8sObject):
    k8s_definition = "io.k8s.api.apps.v1.DeploymentStrategy"
    type: str | None = None


class HorizontalPodAutoscalerBehavior(K8sObject):
    k8s_definition = "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
