"""What KServe's preset templates see: the LLMInferenceService as Go types, `GlobalConfig`, and
the functions KServe registers (`ChildName`, `shutdownTimeout`, `kvTransferConfig`).

Field names are Go's (`.Spec.Model.Name`, `.ObjectMeta.Namespace`, `.Spec.Parallelism.DataRPCPort`)
and so are the value rules: KServe's optional fields are pointers (nil prints `<nil>` and is
false; a set pointer is true even at 0), `.Spec.Model`, `.Spec.Model.URI`,
`.Spec.Parallelism.Expert` and `.Spec.Scaling.MaxReplicas` are plain values, and
Kubernetes types (PodSpec, Container, ...) read their fields leniently (an unset field is nil).
Pure.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from typing import Any

from pydantic import BaseModel

from wharf_api.k8s import K8sObject
from wharf_api.llm.gotemplate import NIL, GoMap, GoPtr, GoStruct
from wharf_api.resources import LLMInferenceService, ObjectMeta

__all__ = ["GlobalConfig", "child_name", "template_data", "template_funcs"]

LONGEST_NAME = 63
_MD5_HEX = 32
_HEAD = LONGEST_NAME - _MD5_HEX


def child_name(parent: str, suffix: str) -> str:
    """knative's kmeta.ChildName: `parent + suffix`, hashed to fit 63 characters."""
    if len(parent) <= LONGEST_NAME - len(suffix):
        return parent + suffix
    digest = hashlib.md5(parent.encode(), usedforsecurity=False).hexdigest()
    if _HEAD - len(suffix) <= 0:
        whole = hashlib.md5((parent + suffix).encode(), usedforsecurity=False).hexdigest()
        out = parent[:_HEAD] + whole
        if len(out) < LONGEST_NAME:
            out += suffix[: LONGEST_NAME - len(out)]
        return re.sub(r"[^a-zA-Z0-9]+$", "", out)
    return parent[: _HEAD - len(suffix)] + digest + suffix


@dataclass(frozen=True)
class GlobalConfig:
    """KServe's templateGlobalConfig: the non-secret controller settings templates may read."""

    system_namespace: str = "kserve"
    ingress_gateway_name: str = "kserve-ingress-gateway"
    ingress_gateway_namespace: str = "kserve"
    enable_tls: bool = False
    model_based_routing_header_name: str = "X-Gateway-Model-Name"
    inference_pool_namespaced_name: str = ""

    def view(self) -> GoStruct:
        fields = {
            "SystemNamespace": self.system_namespace,
            "IngressGatewayName": self.ingress_gateway_name,
            "IngressGatewayNamespace": self.ingress_gateway_namespace,
            "EnableTLS": self.enable_tls,
            "ModelBasedRoutingHeaderName": self.model_based_routing_header_name,
            "InferencePoolNamespacedName": self.inference_pool_namespaced_name,
        }
        return GoStruct("templateGlobalConfig", fields.__getitem__, source=self)


# (model class, JSON field) pairs that are plain values in KServe's Go types, not pointers
_PLAIN = {
    ("LLMInferenceServiceSpec", "model"),
    ("LLMModelSpec", "uri"),
    ("ParallelismSpec", "expert"),
    ("ScalingSpec", "maxReplicas"),
    ("KVCacheOffloadingSpec", "cpu"),
    ("KVCacheOffloadingSpec", "evictionPolicy"),
    ("EmptyDirTierSpec", "size"),
    ("PVCRefTierSpec", "name"),
    ("PVCRefTierSpec", "path"),
    ("ConfidentialSpec", "enabled"),
    ("UntypedObjectReference", "name"),
    ("UntypedObjectReference", "namespace"),
    ("GatewayObjectReference", "name"),
    ("GatewayObjectReference", "namespace"),
}
_ZERO: dict[str, Any] = {"expert": False, "maxReplicas": 0, "enabled": False}
_GO_NAMES = {"objectmeta": "metadata"}
_MAP_FIELDS = {"labels", "annotations", "nodeSelector", "limits", "requests", "matchLabels"}


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


def _model_view(model: BaseModel, go_type: str) -> GoStruct:
    lenient = isinstance(model, K8sObject)
    fields = type(model).model_fields
    by_norm: dict[str, tuple[str, str]] = {}
    for attr, info in fields.items():
        alias = info.alias or attr
        by_norm[_norm(alias)] = (attr, alias)
    extras = model.model_extra or {}

    def lookup(name: str) -> Any:
        key = _GO_NAMES.get(name.lower(), _norm(name))
        if key in by_norm:
            attr, alias = by_norm[key]
            value = getattr(model, attr)
            plain = (type(model).__name__, alias) in _PLAIN or lenient
            return _value(value, plain=plain, zero=_ZERO.get(alias, ""), go_type=alias)
        for extra_key, value in extras.items():
            if _norm(extra_key) == key:
                return _value(value, plain=True, zero="", go_type=extra_key)
        if lenient:
            return NIL
        raise KeyError(name)

    return GoStruct(go_type, lookup, source=model)


def _dict_view(data: Mapping[str, Any], go_type: str) -> GoStruct:
    def lookup(name: str) -> Any:
        for key, value in data.items():
            if _norm(key) == _norm(name):
                return _value(value, plain=True, zero="", go_type=key)
        return NIL

    return GoStruct(go_type, lookup, source=data)


def _value(value: Any, *, plain: bool, zero: Any, go_type: str) -> Any:
    if value is None:
        if not plain:
            return NIL
        if go_type == "model":
            return _model_view(_empty_model_spec(), "LLMModelSpec")
        return zero
    if isinstance(value, BaseModel):
        return _model_view(value, type(value).__name__)
    if isinstance(value, Mapping):
        # map fields are Go maps; any other object is a Go struct
        if go_type in _MAP_FIELDS:
            return GoMap(value)
        return _dict_view(value, go_type)
    if isinstance(value, list):
        return [_value(v, plain=True, zero="", go_type=go_type) for v in value]
    return value if plain else GoPtr(value)


def _empty_model_spec() -> BaseModel:
    from wharf_api.resources.llm_inference_service import LLMModelSpec

    return LLMModelSpec()


def _metadata_view(meta: ObjectMeta) -> GoStruct:
    plain = {
        "Name": meta.name or "",
        "Namespace": meta.namespace or "",
        "GenerateName": meta.generate_name or "",
        "Labels": GoMap(meta.labels or {}),
        "Annotations": GoMap(meta.annotations or {}),
    }
    extras = meta.model_extra or {}

    def lookup(name: str) -> Any:
        if name in plain:
            return plain[name]
        for key, value in extras.items():
            if _norm(key) == _norm(name):
                return _value(value, plain=True, zero="", go_type=key)
        return NIL  # ObjectMeta has more fields (UID, ...); unset ones are zero

    return GoStruct("ObjectMeta", lookup, source=meta)


def template_data(llmisvc: LLMInferenceService, global_config: GlobalConfig) -> GoStruct:
    """The value KServe executes preset templates against: the service, plus GlobalConfig."""
    meta = _metadata_view(llmisvc.metadata)
    spec = _model_view(llmisvc.spec, "LLMInferenceServiceSpec")
    status = (
        _model_view(llmisvc.status, "LLMInferenceServiceStatus")
        if llmisvc.status is not None
        else _dict_view({}, "LLMInferenceServiceStatus")
    )
    top = {
        "ObjectMeta": meta,
        "Spec": spec,
        "Status": status,
        "TypeMeta": _dict_view(
            {"apiVersion": llmisvc.api_version, "kind": llmisvc.kind}, "TypeMeta"
        ),
        "APIVersion": llmisvc.api_version,
        "Kind": llmisvc.kind,
        "GlobalConfig": global_config.view(),
    }

    def lookup(name: str) -> Any:
        if name in top:
            return top[name]
        return meta.field(name)  # ObjectMeta's fields are promoted (`.Name`, `.Namespace`)

    return GoStruct("LLMInferenceService", lookup, source=llmisvc)


# ---- KServe's template functions ----------------------------------------------------------

_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def quantity_value(text: str) -> int:
    """resource.Quantity.Value(): the quantity as an integer, rounded up."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number, suffix = Decimal(match.group(1)), match.group(2) or ""
    if suffix in _BINARY:
        amount = number * Decimal(1024) ** _BINARY[suffix]
    elif suffix in _SI:
        amount = number.scaleb(_SI[suffix])
    else:
        amount = number.scaleb(int(suffix[1:]))
    return int(amount.to_integral_value(rounding=ROUND_UP))


def _child_name(parent: Any, suffix: Any) -> str:
    if not isinstance(parent, str) or not isinstance(suffix, str):
        raise TypeError("ChildName wants two strings")
    return child_name(parent, suffix)


def _shutdown_timeout(spec: Any, pre_stop: Any) -> int:
    # max(0, terminationGracePeriodSeconds (60 when unset) - preStop - min(5, grace))
    grace = 60
    if isinstance(spec, GoStruct):
        value = spec.field("TerminationGracePeriodSeconds")
        value = value.value if isinstance(value, GoPtr) else value
        if isinstance(value, int) and not isinstance(value, bool):
            grace = value
    if not isinstance(pre_stop, int):
        raise TypeError("shutdownTimeout wants an integer preStop")
    return max(0, grace - pre_stop - min(5, grace))


def _kv_transfer_config(spec: Any) -> str:
    if not isinstance(spec, GoStruct):
        return ""
    source = spec.source
    cpu = getattr(source, "cpu", None)
    if cpu is None:
        return ""
    extra: dict[str, Any] = {
        "cpu_bytes_to_use": quantity_value(cpu),
        "spec_name": "TieringOffloadingSpec",
    }
    if getattr(source, "eviction_policy", None):
        extra["eviction_policy"] = source.eviction_policy
    tiers = [
        {"root_dir": f"/mnt/kv-cache-{i}", "type": "fs"}
        for i, tier in enumerate(getattr(source, "secondary", None) or [])
        if tier.file_system is not None
    ]
    if tiers:
        extra["secondary_tiers"] = tiers
    config = {
        "kv_connector": "OffloadingConnector",
        "kv_connector_extra_config": dict(sorted(extra.items())),
        "kv_role": "kv_both",
    }
    # Go's json.Marshal sorts map keys and writes no spaces; KServe escapes the quotes so that
    # they survive its JSON round trip and a shell assignment: `\\\"` in JSON text
    text = json.dumps(config, separators=(",", ":"))
    return "--kv-transfer-config '" + text.replace('"', '\\\\\\"') + "'"


def template_funcs() -> dict[str, Any]:
    return {
        "ChildName": _child_name,
        "shutdownTimeout": _shutdown_timeout,
        "kvTransferConfig": _kv_transfer_config,
    }
