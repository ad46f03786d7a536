"""KServe's preset merge: which configs apply to a service, in which order, and the merged spec.

As KServe's `combineBaseRefsConfig` does:

1. the service's spec with its `baseRefs` merged on top tells the shape (P/D or not, single or
   multi-node, data or pipeline parallel, router parts present);
2. the well-known configs for that shape come first, then the `baseRefs` in order, then the
   service's own spec (strategic merge, `strategic_merge.py`);
3. Go templates in every value are rendered against the service (`template_context.py`);
4. the managed route follows `router.gateway.refs`, and points at the workload Service when
   there is no scheduler, or at `scheduler.pool.ref` when one is given.

A baseRef may name the model (`model.name`): KServe then serves that name, even over the
service's own. Config names are looked up in `configs` first and then in Wharf's built-in
presets, as KServe looks in the service's namespace before the `kserve` namespace; a service
may pin a well-known name in `status.annotations` (`serving.kserve.io/config-llm-template:
NAME`), as KServe pins versioned presets. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pydantic

from wharf_api.llm import presets
from wharf_api.llm.errors import LLMPlanError
from wharf_api.llm.gotemplate import TemplateError, render
from wharf_api.llm.strategic_merge import MergeError, merge_specs
from wharf_api.llm.template_context import GlobalConfig, child_name, template_data, template_funcs
from wharf_api.names import DEFAULT_NAMESPACE
from wharf_api.resources import LLMInferenceService, LLMInferenceServiceConfig
from wharf_api.resources.llm_inference_service import LLMInferenceServiceSpec, ParallelismSpec

__all__ = [
    "AppliedConfig",
    "CombinedSpec",
    "combine",
    "pinned_config_names",
    "well_known_config_names",
]

JSON = dict[str, Any]
PIN_PREFIX = "serving.kserve.io/"
MAX_BASE_REFS = 32
POOL_SUFFIX = "-inference-pool"
WORKLOAD_SERVICE_SUFFIX = "-kserve-workload-svc"
EPP_PORT = 9002


@dataclass(frozen=True)
class AppliedConfig:
    """One config merged into the service: KServe's `status.appliedConfigs[]` entry."""

    name: str
    namespace: str
    source: Literal["Preset", "UserRef"]


@dataclass(frozen=True)
class CombinedSpec:
    spec: LLMInferenceServiceSpec
    applied: tuple[AppliedConfig, ...]
    model_name: str


def _is_data_parallel(p: ParallelismSpec | None) -> bool:
    return p is not None and ((p.data or 0) > 0 or (p.data_local or 0) > 0)


def _is_pipeline_parallel(p: ParallelismSpec | None) -> bool:
    return p is not None and (p.pipeline or 0) > 0


def _workload_preset(
    worker: Any, parallelism: ParallelismSpec | None, single: str, data: str, pipeline: str
) -> str | None:
    if worker is None:
        return single
    if _is_data_parallel(parallelism):
        return data
    if _is_pipeline_parallel(parallelism):
        return pipeline
    return None  # a worker without DP or PP: rejected by validation, as KServe's webhook does


TOKEN_PLUGINS = ("token-producer", "precise-prefix-cache-scorer")
LATENCY_PLUGIN = "predicted-latency-producer"


def _inline_plugin_types(spec: LLMInferenceServiceSpec) -> set[str]:
    router = spec.router
    scheduler = router.scheduler if router is not None else None
    inline = scheduler.config.inline if scheduler and scheduler.config else None
    plugins = (inline or {}).get("plugins")
    if not isinstance(plugins, list):
        return set()
    return {str(p.get("type")) for p in plugins if isinstance(p, Mapping)}


def well_known_config_names(spec: LLMInferenceServiceSpec) -> list[str]:
    """The well-known config suffixes for the shape of `spec`, in KServe's order."""
    names: list[str] = []
    router = spec.router
    plugins = _inline_plugin_types(spec)
    if router is not None and router.scheduler is not None:
        pool = router.scheduler.pool
        if pool is None or pool.ref is None or not pool.ref.name:
            names.append(presets.SCHEDULER)
        if router.scheduler.tokenizer is not None or plugins.intersection(TOKEN_PLUGINS):
            names.append(presets.TOKENIZER)
    if LATENCY_PLUGIN in plugins:
        names.append(presets.SCHEDULER_LATENCY_PREDICTOR)
    if router is not None and router.route is not None:
        http = router.route.http
        if http is None or not http.refs:
            names.append(presets.ROUTER_ROUTE)
    if spec.tracing is not None:
        names.append(presets.TRACING)
    if spec.prefill is not None:
        prefill = _workload_preset(
            spec.prefill.worker,
            spec.prefill.parallelism,
            presets.PREFILL_TEMPLATE,
            presets.PREFILL_WORKER_DATA_PARALLEL,
            presets.PREFILL_WORKER_PIPELINE_PARALLEL,
        )
        decode = _workload_preset(
            spec.worker,
            spec.parallelism,
            presets.DECODE_TEMPLATE,
            presets.DECODE_WORKER_DATA_PARALLEL,
            presets.DECODE_WORKER_PIPELINE_PARALLEL,
        )
        names += [n for n in (prefill, decode) if n]
    else:
        main = _workload_preset(
            spec.worker,
            spec.parallelism,
            presets.TEMPLATE,
            presets.WORKER_DATA_PARALLEL,
            presets.WORKER_PIPELINE_PARALLEL,
        )
        names += [main] if main else []
    return names


# KServe's WellKnownDefaultConfigs: the names it pins (not the pipeline-parallel ones)
PINNED = (
    presets.TEMPLATE,
    presets.DECODE_TEMPLATE,
    presets.WORKER_DATA_PARALLEL,
    presets.DECODE_WORKER_DATA_PARALLEL,
    presets.PREFILL_TEMPLATE,
    presets.PREFILL_WORKER_DATA_PARALLEL,
    presets.SCHEDULER,
    presets.ROUTER_ROUTE,
    presets.SCHEDULER_LATENCY_PREDICTOR,
    presets.TOKENIZER,
    presets.TRACING,
)


def pinned_config_names(llmisvc: LLMInferenceService, prefix: str = presets.CONFIG_PREFIX) -> JSON:
    """The service's `status.annotations` with the well-known names pinned: what KServe's
    WellKnownConfigResolver writes on first reconcile (pins already there are kept)."""
    current = dict((llmisvc.status.annotations if llmisvc.status is not None else None) or {})
    for suffix in PINNED:
        key = PIN_PREFIX + suffix
        if not current.get(key):
            current[key] = prefix + suffix
    return dict(sorted(current.items()))


def _dump_spec(spec: LLMInferenceServiceSpec) -> JSON:
    dumped: JSON = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def _parse_spec(raw: JSON, where: str) -> LLMInferenceServiceSpec:
    try:
        return LLMInferenceServiceSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise LLMPlanError(where, f"spec.{path}", first["msg"]) from None


class _Configs:
    """Config lookup: the caller's configs, then the built-in presets."""

    def __init__(self, configs: Mapping[str, LLMInferenceServiceConfig], prefix: str) -> None:
        self.configs = configs
        self.prefix = prefix

    def get(self, name: str) -> LLMInferenceServiceConfig | None:
        return self.configs.get(name) or presets.builtin_config(name, self.prefix)


def _render_value(value: Any, data: Any, funcs: Mapping[str, Any], where: str, path: str) -> Any:
    if isinstance(value, str):
        try:
            return render(value, data, funcs)
        except TemplateError as exc:
            raise LLMPlanError(where, path, f"template: {exc}") from None
    if isinstance(value, Mapping):
        out: JSON = {}
        for key, item in value.items():
            child = f"{path}.{key}"
            rendered_key = _render_value(str(key), data, funcs, where, child)
            out[rendered_key] = _render_value(item, data, funcs, where, child)
        return out
    if isinstance(value, list):
        return [_render_value(v, data, funcs, where, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _service_where(llmisvc: LLMInferenceService) -> str:
    namespace = llmisvc.metadata.namespace or DEFAULT_NAMESPACE
    return f"LLMInferenceService {namespace}/{llmisvc.name}"


def _pool_name(name: str, spec: LLMInferenceServiceSpec) -> str:
    scheduler = spec.router.scheduler if spec.router is not None else None
    pool = scheduler.pool if scheduler is not None else None
    if pool is not None and pool.ref is not None and pool.ref.name:
        return pool.ref.name
    return child_name(name, POOL_SUFFIX)


def combine(
    llmisvc: LLMInferenceService,
    configs: Mapping[str, LLMInferenceServiceConfig],
    *,
    global_config: GlobalConfig,
    prefix: str = presets.CONFIG_PREFIX,
) -> CombinedSpec:
    """The service's spec with its presets and baseRefs merged in and templates rendered."""
    where = _service_where(llmisvc)
    name = llmisvc.name
    namespace = llmisvc.metadata.namespace or DEFAULT_NAMESPACE
    lookup = _Configs(configs, prefix)
    svc = llmisvc.model_copy(deep=True)
    svc.metadata.namespace = namespace
    spec = svc.spec
    if spec.model is None:
        raise LLMPlanError(where, "spec.model", "is required")
    if not spec.model.name:
        spec.model.name = name  # KServe's defaulting webhook
    base_refs = spec.base_refs or []
    if len(base_refs) > MAX_BASE_REFS:
        raise LLMPlanError(where, "spec.baseRefs", f"more than {MAX_BASE_REFS} configs")

    user_configs: list[tuple[str, LLMInferenceServiceConfig]] = []
    for i, ref in enumerate(base_refs):
        cfg = lookup.get(ref.name or "")
        if cfg is None:
            raise LLMPlanError(
                where,
                f"spec.baseRefs[{i}].name",
                f"LLMInferenceServiceConfig {ref.name!r} not found in namespaces "
                f"[{namespace!r}, {presets.SYSTEM_NAMESPACE!r}]",
            )
        user_configs.append((ref.name or "", cfg))

    # 1. the shape: the service's spec with the baseRefs merged on top of it
    resolved = _dump_spec(spec)
    for ref_name, cfg in user_configs:
        resolved = _merge(resolved, _dump_spec(cfg.spec), f"LLMInferenceServiceConfig {ref_name}")
    resolved_spec = _parse_spec(resolved, where)
    if resolved_spec.model is not None and resolved_spec.model.name:
        spec.model.name = resolved_spec.model.name

    # 2. well-known configs first, then baseRefs, then the service's own spec
    pins = (svc.status.annotations if svc.status is not None else None) or {}
    sources: list[tuple[str, LLMInferenceServiceConfig, Literal["Preset", "UserRef"]]] = []
    for suffix in well_known_config_names(resolved_spec):
        # the route preset is never pinned: it follows the Gateway API provider's version
        pinned = pins.get(PIN_PREFIX + suffix) if suffix != presets.ROUTER_ROUTE else None
        config_name = pinned or prefix + suffix
        cfg = lookup.get(config_name)
        if cfg is None:
            raise LLMPlanError(
                where,
                "spec",
                f"the well-known LLMInferenceServiceConfig {config_name!r} for this shape of "
                f"service was not found in namespaces [{namespace!r}, "
                f"{presets.SYSTEM_NAMESPACE!r}]",
            )
        sources.append((config_name, cfg, "Preset"))
    sources += [(n, c, "UserRef") for n, c in user_configs]

    # the merge before rendering gives the pool name that GlobalConfig carries
    unrendered: JSON = {}
    for config_name, cfg, _ in sources:
        unrendered = _merge(
            unrendered, _dump_spec(cfg.spec), f"LLMInferenceServiceConfig {config_name}"
        )
    unrendered = _merge(unrendered, _dump_spec(spec), where)
    pool = _pool_name(name, _parse_spec(unrendered, where))
    gc = GlobalConfig(
        **{
            **global_config.__dict__,
            "inference_pool_namespaced_name": f"{namespace}/{pool}",
        }
    )
    data = template_data(svc, gc)
    funcs = template_funcs()

    # 3. render each source, then merge them in order
    merged: JSON = {}
    for config_name, cfg, _ in sources:
        cfg_where = f"LLMInferenceServiceConfig {config_name}"
        rendered = _render_value(_dump_spec(cfg.spec), data, funcs, cfg_where, "spec")
        merged = _merge(merged, rendered, cfg_where)
    own = _render_value(_dump_spec(spec), data, funcs, where, "spec")
    merged = _merge(merged, own, where)

    # 4. the managed route, pool and scheduler defaults KServe fills in after merging
    merged = _route_and_pool_defaults(merged, name, pool)
    applied = tuple(
        AppliedConfig(
            name=config_name,
            namespace=cfg.metadata.namespace or presets.SYSTEM_NAMESPACE,
            source=source,
        )
        for config_name, cfg, source in sources
    )
    final = _parse_spec(merged, where)
    model_name = final.model.name if final.model is not None and final.model.name else name
    return CombinedSpec(spec=final, applied=applied, model_name=model_name)


def _merge(base: JSON, override: JSON, where: str) -> JSON:
    try:
        return merge_specs(base, override, "spec")
    except MergeError as exc:
        raise LLMPlanError(where, "spec", str(exc)) from None


def _route_and_pool_defaults(spec: JSON, name: str, pool: str) -> JSON:
    router = spec.get("router")
    if not isinstance(router, dict):
        return spec
    scheduler = router.get("scheduler")
    if isinstance(scheduler, dict):
        pool_spec = (scheduler.get("pool") or {}).get("spec")
        if isinstance(pool_spec, dict):
            selector = pool_spec.setdefault("selector", {})
            if not selector.get("matchLabels"):
                selector["matchLabels"] = {
                    "app.kubernetes.io/name": name,
                    "app.kubernetes.io/part-of": "llminferenceservice",
                    "kserve.io/component": "workload",
                }
            picker = pool_spec.setdefault("endpointPickerRef", {})
            if picker.get("kind", "Service") == "Service" and not (picker.get("port") or {}).get(
                "number"
            ):
                picker["port"] = {"number": EPP_PORT}
        template = scheduler.get("template")
        if isinstance(template, dict) and not template.get("serviceAccountName"):
            template["serviceAccountName"] = child_name(name, "-epp-sa")
    route = router.get("route")
    http_spec = ((route or {}).get("http") or {}).get("spec") if isinstance(route, dict) else None
    if not isinstance(http_spec, dict):
        return spec
    gateway_refs = (router.get("gateway") or {}).get("refs") or []
    if gateway_refs:
        http_spec["parentRefs"] = [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": ref.get("name", ""),
                **({"namespace": ref["namespace"]} if ref.get("namespace") else {}),
                **({"sectionName": ref["sectionName"]} if ref.get("sectionName") else {}),
            }
            for ref in gateway_refs
        ]
    default_pool = child_name(name, POOL_SUFFIX)
    has_pool_ref = isinstance(scheduler, dict) and bool(
        ((scheduler.get("pool") or {}).get("ref") or {}).get("name")
    )
    for rule in http_spec.get("rules") or []:
        for backend in rule.get("backendRefs") or []:
            if backend.get("kind") != "InferencePool" or backend.get("name") != default_pool:
                continue
            if scheduler is None:
                backend["group"] = ""
                backend["kind"] = "Service"
                backend["name"] = child_name(name, WORKLOAD_SERVICE_SUFFIX)
            elif has_pool_ref:
                backend["name"] = pool
    return spec
