"""LLMInferenceService(Config) between `v1alpha1` (served) and `v1alpha2` (stored), as KServe.

Pure functions on plain objects (what the API server sends a conversion webhook), so fields the
models do not know pass through untouched. The shapes differ as KServe's Go types do:

- `spec.model.criticality` (and each LoRA adapter's) exists only in v1alpha1; on the way to
  v1alpha2 it is kept in KServe's annotations `internal.serving.kserve.io/model-criticality` and
  `internal.serving.kserve.io/lora-criticalities` (JSON, adapter index -> value) and restored
  (annotations removed) on the way back, so v1alpha1 -> v1alpha2 -> v1alpha1 loses nothing.
- `kvCacheOffloading` (on the main workload and on `prefill`) and `spec.model.confidential`
  exist only in v1alpha2; v1alpha1 has no place for them and, as in KServe, they are dropped.
- `spec.router.scheduler.pool.spec` is a Gateway API Inference Extension pool spec: v1alpha2
  shape in v1alpha1 (`selector` map, `targetPortNumber`, `extensionRef`), v1 shape in v1alpha2
  (`selector.matchLabels`, `targetPorts`, `endpointPickerRef`), with GIE's defaults (kind
  `Service`, port 9002, `FailClose`).
- Status: v1alpha2 adds `workloads`, `appliedConfigs`, `router.group`, each address's `origin`
  and `models`, and the config's `referencedBy`; they are dropped on the way to v1alpha1 (the
  controller writes status at v1alpha2 again on its next reconcile).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

GROUP = "serving.kserve.io"
KINDS = ("LLMInferenceService", "LLMInferenceServiceConfig")
V1ALPHA1 = f"{GROUP}/v1alpha1"
V1ALPHA2 = f"{GROUP}/v1alpha2"
API_VERSIONS = (V1ALPHA1, V1ALPHA2)

MODEL_CRITICALITY_ANNOTATION = "internal.serving.kserve.io/model-criticality"
LORA_CRITICALITIES_ANNOTATION = "internal.serving.kserve.io/lora-criticalities"

# GIE's defaults when an InferencePool's v1alpha2 extensionRef becomes a v1 endpointPickerRef.
_DEFAULT_PICKER_KIND = "Service"
_DEFAULT_PICKER_PORT = 9002
_DEFAULT_FAILURE_MODE = "FailClose"

# Status fields each version has (duckv1.Status plus the LLM ones).
_V1ALPHA1_STATUS = ("observedGeneration", "conditions", "annotations", "url", "address")
_ADDRESSABLE = ("name", "url", "CACerts", "audience")

JSON = dict[str, Any]


class ConversionError(ValueError):
    """An object that cannot be converted; the message names the field."""


def convert(obj: Mapping[str, Any], desired_api_version: str) -> JSON:
    """Return `obj` (an LLMInferenceService or LLMInferenceServiceConfig) at `desired_api_version`.

    `obj` itself is not changed. Converting to the version it already has returns a copy.
    """
    kind = obj.get("kind")
    if kind not in KINDS:
        raise ConversionError(f"kind: {kind!r} has no conversion (only {', '.join(KINDS)})")
    source = obj.get("apiVersion")
    if source not in API_VERSIONS:
        raise ConversionError(f"apiVersion: {source!r} is not one of {', '.join(API_VERSIONS)}")
    if desired_api_version not in API_VERSIONS:
        raise ConversionError(
            f"desiredAPIVersion: {desired_api_version!r} is not one of {', '.join(API_VERSIONS)}"
        )
    out = copy.deepcopy(dict(obj))
    if source == desired_api_version:
        return out
    if desired_api_version == V1ALPHA2:
        return _to_v1alpha2(out, str(kind))
    return _to_v1alpha1(out, str(kind))


def _dict(value: Any) -> JSON | None:
    return value if isinstance(value, dict) else None


# --- v1alpha1 -> v1alpha2 ---------------------------------------------------------------------


def _to_v1alpha2(obj: JSON, kind: str) -> JSON:
    obj["apiVersion"] = V1ALPHA2
    spec = _dict(obj.get("spec"))
    if spec is not None:
        _save_criticality(obj, spec)
        _pool_spec_to_v1(spec)
    status = _dict(obj.get("status"))
    if status is not None and kind == "LLMInferenceService":
        obj["status"] = _status_keep(status, (*_V1ALPHA1_STATUS, "addresses", "router"))
    return obj


def _save_criticality(obj: JSON, spec: JSON) -> None:
    model = _dict(spec.get("model"))
    if model is None:
        return
    saved: dict[str, str] = {}
    criticality = model.pop("criticality", None)
    if criticality:
        saved[MODEL_CRITICALITY_ANNOTATION] = str(criticality)
    lora = _dict(model.get("lora"))
    adapters = lora.get("adapters") if lora is not None else None
    per_adapter: dict[str, str] = {}
    for index, adapter in enumerate(adapters if isinstance(adapters, list) else []):
        if isinstance(adapter, dict):
            value = adapter.pop("criticality", None)
            if value:
                per_adapter[str(index)] = str(value)
    if per_adapter:
        saved[LORA_CRITICALITIES_ANNOTATION] = json.dumps(per_adapter, separators=(",", ":"))
    if saved:
        metadata = obj.setdefault("metadata", {})
        annotations = metadata.get("annotations") or {}
        metadata["annotations"] = {**annotations, **saved}


def _pool(spec: JSON) -> JSON | None:
    router = _dict(spec.get("router"))
    scheduler = _dict(router.get("scheduler")) if router is not None else None
    pool = _dict(scheduler.get("pool")) if scheduler is not None else None
    return _dict(pool.get("spec")) if pool is not None else None


def _pool_spec_to_v1(spec: JSON) -> None:
    pool = _pool(spec)
    if pool is None:
        return
    selector = pool.get("selector")
    if isinstance(selector, dict) and "matchLabels" not in selector:
        pool["selector"] = {"matchLabels": selector}
    if "targetPortNumber" in pool:
        pool["targetPorts"] = [{"number": pool.pop("targetPortNumber")}]
    extension = _dict(pool.pop("extensionRef", None))
    if extension is not None:
        picker: JSON = {}
        if extension.get("group") is not None:
            picker["group"] = extension["group"]
        picker["kind"] = extension.get("kind") or _DEFAULT_PICKER_KIND
        picker["name"] = extension.get("name", "")
        port = extension.get("portNumber")
        if port:
            picker["port"] = {"number": port}
        elif picker["kind"] == _DEFAULT_PICKER_KIND:
            picker["port"] = {"number": _DEFAULT_PICKER_PORT}
        picker["failureMode"] = extension.get("failureMode") or _DEFAULT_FAILURE_MODE
        pool["endpointPickerRef"] = picker


# --- v1alpha2 -> v1alpha1 ---------------------------------------------------------------------


def _to_v1alpha1(obj: JSON, kind: str) -> JSON:
    obj["apiVersion"] = V1ALPHA1
    spec = _dict(obj.get("spec"))
    if spec is not None:
        for workload in (spec, _dict(spec.get("prefill"))):
            if workload is not None:
                workload.pop("kvCacheOffloading", None)
        model = _dict(spec.get("model"))
        if model is not None:
            _drop_confidential(model)
        _pool_spec_to_v1alpha2(spec)
        _restore_criticality(obj, spec)
    status = _dict(obj.get("status"))
    if status is not None:
        if kind == "LLMInferenceService":
            out = _status_keep(status, _V1ALPHA1_STATUS)
            addresses = status.get("addresses")
            if isinstance(addresses, list):
                out["addresses"] = [
                    {k: a[k] for k in _ADDRESSABLE if k in a}
                    for a in addresses
                    if isinstance(a, dict)
                ]
            router = _dict(status.get("router"))
            if router is not None:
                out["router"] = {k: v for k, v in router.items() if k != "group"}
            obj["status"] = out
        else:
            obj["status"] = _status_keep(
                status, ("observedGeneration", "conditions", "annotations")
            )
    return obj


def _drop_confidential(model: JSON) -> None:
    model.pop("confidential", None)
    lora = _dict(model.get("lora"))
    adapters = lora.get("adapters") if lora is not None else None
    for adapter in adapters if isinstance(adapters, list) else []:
        if isinstance(adapter, dict):
            _drop_confidential(adapter)


def _restore_criticality(obj: JSON, spec: JSON) -> None:
    metadata = _dict(obj.get("metadata"))
    annotations = _dict(metadata.get("annotations")) if metadata is not None else None
    if metadata is None or annotations is None:
        return
    model = _dict(spec.get("model"))
    criticality = annotations.pop(MODEL_CRITICALITY_ANNOTATION, None)
    if criticality and model is not None:
        model["criticality"] = criticality
    raw = annotations.pop(LORA_CRITICALITIES_ANNOTATION, None)
    lora = _dict(model.get("lora")) if model is not None else None
    adapters = lora.get("adapters") if lora is not None else None
    if raw and isinstance(adapters, list):
        try:
            saved = json.loads(raw)
        except ValueError:  # a hand-edited annotation: KServe ignores it too
            saved = {}
        for index, adapter in enumerate(adapters):
            value = saved.get(str(index)) if isinstance(saved, dict) else None
            if value and isinstance(adapter, dict):
                adapter["criticality"] = value
    if not annotations:
        del metadata["annotations"]


def _pool_spec_to_v1alpha2(spec: JSON) -> None:
    pool = _pool(spec)
    if pool is None:
        return
    selector = _dict(pool.get("selector"))
    if selector is not None and "matchLabels" in selector:
        pool["selector"] = selector.get("matchLabels") or {}
    ports = pool.pop("targetPorts", None)
    if isinstance(ports, list) and ports and isinstance(ports[0], dict):
        pool["targetPortNumber"] = ports[0].get("number")
    picker = _dict(pool.pop("endpointPickerRef", None))
    if picker is not None:
        extension: JSON = {}
        if picker.get("group") is not None:
            extension["group"] = picker["group"]
        extension["kind"] = picker.get("kind", "")
        extension["name"] = picker.get("name", "")
        port = _dict(picker.get("port"))
        if port is not None and "number" in port:
            extension["portNumber"] = port["number"]
        extension["failureMode"] = picker.get("failureMode", "")
        pool["extensionRef"] = extension


def _status_keep(status: JSON, keys: tuple[str, ...]) -> JSON:
    return {k: status[k] for k in keys if k in status}
