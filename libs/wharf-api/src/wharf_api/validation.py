"""KServe's validating webhooks, as pure functions. Every error names the field path."""

from __future__ import annotations

import re

from wharf_api.defaulting import (
    DEPLOYMENT_MODE_ANNOTATION,
    DEPLOYMENT_MODES,
    LEGACY_DEPLOYMENT_MODES,
    normalize_deployment_mode,
)
from wharf_api.errors import WharfValidationError
from wharf_api.names import dns1035_label_error, dns1123_label_error, dns1123_subdomain_error
from wharf_api.resources import (
    ClusterServingRuntime,
    InferenceGraph,
    InferenceService,
    LLMInferenceService,
    LLMInferenceServiceConfig,
    LocalModelCache,
    LocalModelNamespaceCache,
    Resource,
    ServingRuntime,
)
from wharf_api.resources.inference_service import (
    ComponentExtensionSpec,
    PredictorExtensionSpec,
    PredictorSpec,
)
from wharf_api.resources.llm_inference_service import WorkloadSpec

MODE_PATH = f"metadata.annotations[{DEPLOYMENT_MODE_ANNOTATION}]"


class _Collector:
    def __init__(self, obj: Resource) -> None:
        self.kind = obj.kind
        self.name = obj.name
        self.errors: list[WharfValidationError] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append(WharfValidationError(self.kind, self.name, path, message))


def _component(c: _Collector, comp: ComponentExtensionSpec, path: str) -> None:
    lo, hi = comp.min_replicas, comp.max_replicas
    if lo is not None and lo < 0:
        c.add(f"{path}.minReplicas", f"must be >= 0, got {lo}")
    if hi is not None and hi < 0:
        c.add(f"{path}.maxReplicas", f"must be >= 0, got {hi}")
    if lo is not None and hi is not None and hi > 0 and lo > hi:
        c.add(f"{path}.minReplicas", f"minReplicas {lo} is greater than maxReplicas {hi}")
    pct = comp.canary_traffic_percent
    if pct is not None and not 0 <= pct <= 100:
        c.add(f"{path}.canaryTrafficPercent", f"must be between 0 and 100, got {pct}")
    if comp.scale_target is not None and comp.scale_target <= 0:
        c.add(f"{path}.scaleTarget", f"must be > 0, got {comp.scale_target}")
    if comp.container_concurrency is not None and comp.container_concurrency < 0:
        c.add(f"{path}.containerConcurrency", "must be >= 0")


def _predictor(c: _Collector, pred: PredictorSpec, path: str) -> None:
    _component(c, pred, path)
    impls = pred.frameworks_set() + (["model"] if pred.model is not None else [])
    if len(impls) > 1:
        c.add(f"{path}.{impls[1]}", f"exactly one model framework is allowed, got {impls}")
    elif not impls and not pred.containers:
        c.add(path, "one of model, a framework (sklearn, ...) or containers is required")
    for impl in impls:
        ext: PredictorExtensionSpec = getattr(pred, impl)
        sources = [
            name
            for name, value in (
                ("storageUri", ext.storage_uri),
                ("storageUris", ext.storage_uris or pred.storage_uris),
                ("storage", ext.storage),
            )
            if value
        ]
        if len(sources) > 1:
            c.add(f"{path}.{impl}.{sources[1]}", f"at most one of {sources} may be set")
    worker = pred.worker_spec
    if worker is not None:
        for field in ("pipeline_parallel_size", "tensor_parallel_size"):
            size = getattr(worker, field)
            if size is not None and size < 1:
                camel = "pipelineParallelSize" if field.startswith("pipe") else "tensorParallelSize"
                c.add(f"{path}.workerSpec.{camel}", f"must be >= 1, got {size}")


def _metadata(c: _Collector, obj: Resource) -> None:
    """Names and namespaces as the API server checks them: nothing else may use them as a
    folder, a host or a label before this passes."""
    meta = obj.metadata
    if not meta.name and not meta.generate_name:
        c.add("metadata.name", "a name is required")
    elif meta.name:
        # InferenceService names become Service and host names: KServe asks DNS-1035
        check = (
            dns1035_label_error if isinstance(obj, InferenceService) else dns1123_subdomain_error
        )
        why = check(meta.name)
        if why is not None:
            c.add("metadata.name", why)
    if meta.namespace is not None:
        why = dns1123_label_error(meta.namespace)
        if why is not None:
            c.add("metadata.namespace", why)


def _isvc(c: _Collector, isvc: InferenceService) -> None:
    mode = (isvc.metadata.annotations or {}).get(DEPLOYMENT_MODE_ANNOTATION)
    allowed = (*DEPLOYMENT_MODES, *LEGACY_DEPLOYMENT_MODES)
    if mode is not None and mode not in allowed:
        c.add(MODE_PATH, f"unknown deployment mode {mode!r}; one of {list(allowed)}")
    spec = isvc.spec
    _predictor(c, spec.predictor, "spec.predictor")
    if spec.transformer is not None:
        _component(c, spec.transformer, "spec.transformer")
    if spec.explainer is not None:
        _component(c, spec.explainer, "spec.explainer")
    total = 0
    for i, canary in enumerate(spec.canary or []):
        path = f"spec.canary[{i}]"
        _predictor(c, canary.predictor, f"{path}.predictor")
        if not canary.predictor.name:
            c.add(f"{path}.predictor.name", "a canary predictor needs a name")
        pct = canary.traffic_percent or 0
        if not 0 <= pct <= 100:
            c.add(f"{path}.trafficPercent", f"must be between 0 and 100, got {pct}")
        total += pct
        for field in ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling", "workerSpec"):
            snake = re.sub(r"([A-Z])", r"_\1", field).lower()
            if getattr(canary.predictor, snake) is not None:
                c.add(f"{path}.predictor.{field}", "is not allowed on a canary")
    if total > 100:
        c.add("spec.canary", f"traffic percentages sum to {total}, more than 100")


def _graph(c: _Collector, graph: InferenceGraph) -> None:
    spec = graph.spec
    lo, hi = spec.min_replicas, spec.max_replicas
    if lo is not None and lo < 0:
        c.add("spec.minReplicas", f"must be >= 0, got {lo}")
    if lo is not None and hi is not None and hi > 0 and lo > hi:
        c.add("spec.minReplicas", f"minReplicas {lo} is greater than maxReplicas {hi}")
    nodes = spec.nodes
    if "root" not in nodes:
        c.add("spec.nodes", "the graph needs a node named 'root'")
    for node_name, node in nodes.items():
        path = f"spec.nodes.{node_name}"
        seen: set[str] = set()
        weights = 0
        for i, step in enumerate(node.steps or []):
            targets = [t for t in (step.node_name, step.service_name, step.service_url) if t]
            if len(targets) != 1:
                c.add(
                    f"{path}.steps[{i}]",
                    "exactly one of nodeName, serviceName, serviceUrl is required",
                )
            if step.node_name and step.node_name not in nodes:
                c.add(f"{path}.steps[{i}].nodeName", f"no node named {step.node_name!r}")
            if step.name:
                if step.name in seen:
                    c.add(f"{path}.steps[{i}].name", f"duplicate step name {step.name!r}")
                seen.add(step.name)
            weights += step.weight or 0
        if node.router_type == "Splitter" and node.steps and weights != 100:
            c.add(f"{path}.steps", f"Splitter weights must sum to 100, got {weights}")


def _runtime(c: _Collector, rt: ServingRuntime | ClusterServingRuntime) -> None:
    if not rt.spec.containers:
        c.add("spec.containers", "at least one container is required")
    if rt.spec.worker_spec is not None and not rt.spec.worker_spec.containers:
        c.add("spec.workerSpec.containers", "a workerSpec needs at least one container")


def _workload(c: _Collector, w: WorkloadSpec, path: str) -> None:
    if w.replicas is not None and w.scaling is not None:
        c.add(f"{path}.scaling", "replicas and scaling are mutually exclusive")
    if w.replicas is not None and w.replicas < 0:
        c.add(f"{path}.replicas", "must be >= 0")


def _llm(c: _Collector, obj: LLMInferenceService | LLMInferenceServiceConfig) -> None:
    _workload(c, obj.spec, "spec")
    if obj.spec.prefill is not None:
        _workload(c, obj.spec.prefill, "spec.prefill")
    router = obj.spec.router
    if router is not None and router.ingress is not None and router.gateway is not None:
        c.add("spec.router.ingress", "ingress and gateway are mutually exclusive")


def validation_errors(obj: Resource) -> list[WharfValidationError]:
    """Every reason KServe would reject `obj` (an empty list when it is accepted)."""
    c = _Collector(obj)
    _metadata(c, obj)
    if isinstance(obj, InferenceService):
        _isvc(c, obj)
    elif isinstance(obj, InferenceGraph):
        _graph(c, obj)
    elif isinstance(obj, ServingRuntime | ClusterServingRuntime):
        _runtime(c, obj)
    elif isinstance(obj, LLMInferenceService | LLMInferenceServiceConfig):
        _llm(c, obj)
    return c.errors


def validate(obj: Resource) -> None:
    """Raise the first WharfValidationError, if any."""
    errors = validation_errors(obj)
    if errors:
        raise errors[0]


def _mode(isvc: InferenceService) -> str | None:
    if isvc.status is not None and isvc.status.deployment_mode:
        return normalize_deployment_mode(isvc.status.deployment_mode)
    mode = (isvc.metadata.annotations or {}).get(DEPLOYMENT_MODE_ANNOTATION)
    return normalize_deployment_mode(mode) if mode is not None else None


def validate_update(old: Resource, new: Resource) -> None:
    """Validate `new` as a replacement of `old`: immutable fields must not change."""
    validate(new)
    c = _Collector(new)
    if isinstance(old, InferenceService) and isinstance(new, InferenceService):
        before = _mode(old)
        raw = (new.metadata.annotations or {}).get(DEPLOYMENT_MODE_ANNOTATION)
        after = normalize_deployment_mode(raw) if raw is not None else None
        if before is not None and after != before:
            c.add(MODE_PATH, f"the deployment mode is immutable: {before!r} -> {after!r}")
    caches = (LocalModelCache, LocalModelNamespaceCache)
    if (
        isinstance(old, caches)
        and isinstance(new, caches)
        and old.spec.source_model_uri != new.spec.source_model_uri
    ):
        c.add("spec.sourceModelUri", "is immutable")
    if c.errors:
        raise c.errors[0]
