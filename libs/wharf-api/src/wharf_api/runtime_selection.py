"""Pick the ServingRuntime or ClusterServingRuntime for a predictor, as KServe does.

Namespaced runtimes come before cluster runtimes. A runtime is kept when it is not disabled,
is single-model, supports the model format with `autoSelect` (any of its formats when the
predictor names the runtime), supports the protocol (an empty list supports all) and is
multi-node exactly when the predictor is. Within each list, a runtime with a `priority` for the
format beats one without and a higher priority wins; ties go to the lowest protocol, the newest
runtime, then the name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wharf_api.defaulting import predictor_model
from wharf_api.errors import NoSupportingRuntimeError
from wharf_api.resources import ClusterServingRuntime, InferenceService, ServingRuntime
from wharf_api.resources.inference_service import PROTOCOL_VERSIONS, ModelSpec, PredictorSpec
from wharf_api.resources.serving_runtime import ServingRuntimeSpec, SupportedModelFormat

Runtime = ServingRuntime | ClusterServingRuntime


@dataclass(frozen=True)
class _Request:
    format_name: str
    format_version: str | None
    protocol: str
    multi_node: bool
    runtime: str | None


def _request(target: InferenceService | PredictorSpec | ModelSpec) -> _Request:
    multi_node = False
    if isinstance(target, InferenceService):
        target = target.spec.predictor
    if isinstance(target, PredictorSpec):
        multi_node = target.worker_spec is not None
        model = predictor_model(target)
        if model is None:
            raise NoSupportingRuntimeError("the predictor has no single model to serve", {})
    else:
        model = target
    return _Request(
        format_name=model.model_format.name,
        format_version=model.model_format.version,
        protocol=model.protocol_version or "v1",
        multi_node=multi_node,
        runtime=model.runtime,
    )


def _format_matches(fmt: SupportedModelFormat, req: _Request) -> bool:
    if fmt.name != req.format_name:
        return False
    return req.format_version is None or fmt.version == req.format_version


def _why_not(spec: ServingRuntimeSpec, req: _Request, explicit: bool) -> str | None:
    """None when the runtime fits the request, else the reason it does not."""
    if spec.disabled:
        return "disabled"
    if spec.multi_model:
        return "multiModel runtime"
    formats = [
        f
        for f in spec.supported_model_formats or []
        if _format_matches(f, req) and (explicit or f.auto_select)
    ]
    if not formats:
        wanted = req.format_name + (f":{req.format_version}" if req.format_version else "")
        return f"does not support model format {wanted}" + ("" if explicit else " (autoSelect)")
    if spec.protocol_versions and req.protocol not in spec.protocol_versions:
        return f"does not support protocol {req.protocol}"
    if (spec.worker_spec is not None) != req.multi_node:
        return "multi-node mismatch" if req.multi_node else "multi-node runtime"
    return None


def _priority(spec: ServingRuntimeSpec, req: _Request) -> int | None:
    found = [
        f.priority
        for f in spec.supported_model_formats or []
        if _format_matches(f, req) and f.auto_select and f.priority is not None
    ]
    return max(found) if found else None


def _sort_key(rt: Runtime, req: _Request) -> tuple[int, int, int, str, str]:
    priority = _priority(rt.spec, req)
    protocols = rt.spec.protocol_versions or []
    lowest = min((PROTOCOL_VERSIONS.index(p) for p in protocols), default=0)
    created = str(getattr(rt.metadata, "creationTimestamp", "") or "")
    # newest first: invert the ISO timestamp's characters so a plain sort puts it first
    newest_first = "".join(chr(0x10FFFF - ord(ch)) for ch in created)
    return (
        0 if priority is not None else 1,
        -(priority or 0),
        lowest,
        newest_first,
        rt.metadata.name or "",
    )


def _label(rt: Runtime) -> str:
    return f"{rt.kind}/{rt.metadata.name}"


def select_runtime(
    target: InferenceService | PredictorSpec | ModelSpec,
    runtimes: Sequence[ServingRuntime],
    cluster_runtimes: Sequence[ClusterServingRuntime],
) -> tuple[str, ServingRuntimeSpec, bool]:
    """Return (runtime name, its spec, whether it is a ClusterServingRuntime)."""
    req = _request(target)
    if req.runtime is not None:
        named: list[Runtime] = [r for r in runtimes if r.metadata.name == req.runtime]
        named += [r for r in cluster_runtimes if r.metadata.name == req.runtime]
        if not named:
            raise NoSupportingRuntimeError(
                f"RuntimeNotRecognized: no ServingRuntime or ClusterServingRuntime "
                f"named {req.runtime!r}",
                {},
            )
        chosen = named[0]
        why = _why_not(chosen.spec, req, explicit=True)
        if why is not None:
            reason = "RuntimeDisabled" if why == "disabled" else "NoSupportingRuntime"
            raise NoSupportingRuntimeError(
                f"{reason}: runtime {req.runtime!r} cannot serve this model",
                {_label(chosen): why},
            )
        return req.runtime, chosen.spec, isinstance(chosen, ClusterServingRuntime)

    reasons: dict[str, str] = {}
    groups: tuple[Sequence[Runtime], Sequence[Runtime]] = (runtimes, cluster_runtimes)
    for group in groups:
        fitting: list[Runtime] = []
        for rt in group:
            why = _why_not(rt.spec, req, explicit=False)
            if why is None:
                fitting.append(rt)
            else:
                reasons[_label(rt)] = why
        if fitting:
            best = min(fitting, key=lambda r: _sort_key(r, req))
            name = best.metadata.name or ""
            return name, best.spec, isinstance(best, ClusterServingRuntime)
    raise NoSupportingRuntimeError(
        f"NoSupportingRuntime: no runtime supports model format {req.format_name} "
        f"with protocol {req.protocol}",
        reasons,
    )
