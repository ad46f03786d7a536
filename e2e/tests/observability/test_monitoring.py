"""The monitoring component (deploy/components/monitoring): the Grafana dashboard is built on
metric names the services really export, and the scrape targets select what Wharf creates.

Exported names come from the code itself: every prometheus-client metric defined in
services/*/src and libs/*/src (Counter, Gauge, Histogram, ... and the *MetricFamily of custom
collectors), with the sample names prometheus-client derives (`_total`, `_bucket`, ...). The LLM
workers' engine metrics are vLLM's (`vllm:*`): their names are listed below from
shared/reference (llm-serving.md section 9) and, when the engine environment is installed,
checked against the installed vLLM's own sources.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "deploy" / "components" / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "wharf.json"

# prometheus-client's kinds and the sample names each exports for a metric `name`
_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "CounterMetricFamily": ("_total", "_created"),
    "Gauge": ("",),
    "GaugeMetricFamily": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "HistogramMetricFamily": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("_sum", "_count", "_created"),
    "SummaryMetricFamily": ("_sum", "_count", "_created"),
    "Info": ("_info",),
    "InfoMetricFamily": ("_info",),
    # the gateway's lock-free histogram (wharf_router.gateway.telemetry): a histogram's samples
    # but `_created`
    "StreamHistogram": ("_bucket", "_sum", "_count"),
}
# vLLM's names (v1 engine) that the dashboard may use, by kind. Checked against the installed
# vLLM by test_vllm_names_are_vllms_own.
VLLM = {
    "vllm:time_to_first_token_seconds": "Histogram",
    "vllm:inter_token_latency_seconds": "Histogram",
    "vllm:e2e_request_latency_seconds": "Histogram",
    "vllm:generation_tokens": "Counter",
    "vllm:prompt_tokens": "Counter",
    "vllm:request_success": "Counter",
    "vllm:prefix_cache_queries": "Counter",
    "vllm:prefix_cache_hits": "Counter",
    "vllm:kv_cache_usage_perc": "Gauge",
    "vllm:num_requests_waiting": "Gauge",
    "vllm:num_requests_running": "Gauge",
}
# Series Prometheus makes itself for every target
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and",
    "or", "unless", "inf", "nan",
}  # fmt: skip


def _sample_names(name: str, kind: str) -> set[str]:
    if kind.startswith("Counter") and name.endswith("_total"):
        name = name[: -len("_total")]  # prometheus-client strips it and adds it back
    return {name + suffix for suffix in _SUFFIXES[kind]}


def metric_definitions() -> dict[str, str]:
    """Metric name -> kind, for every prometheus-client metric defined in the code."""
    found: dict[str, str] = {}
    sources = [*ROOT.glob("services/*/src"), *ROOT.glob("libs/*/src")]
    for src in sources:
        for py in src.rglob("*.py"):
            for node in ast.walk(ast.parse(py.read_text())):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                first = node.args[0]
                named = isinstance(first, ast.Constant) and isinstance(first.value, str)
                if kind in _SUFFIXES and named:
                    found[first.value] = kind  # type: ignore[attr-defined]
    return found


def exported_samples() -> set[str]:
    samples = set(PROMETHEUS_OWN)
    for name, kind in {**metric_definitions(), **VLLM}.items():
        samples |= _sample_names(name, kind)
    return samples


def promql_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    text = re.sub(r"(?<![A-Za-z0-9_:])\d[\w.]*", " ", text)  # numbers and durations (5m)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        after = text[match.end() :].lstrip()
        if after.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue  # a function or an aggregation, or a keyword
        names.add(word)
    return names


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _targets() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_promql_reader_finds_metrics_and_nothing_else() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, model_name) (rate(vllm:time_to_first_token_seconds"
        '_bucket{namespace=~"$namespace", status!~"2..|0"}[$__rate_interval]))) / '
        "sum without (pod) (kserve_inference_count_total offset 5m) + max(up) * 2"
    )
    assert promql_metrics(expr) == {
        "vllm:time_to_first_token_seconds_bucket",
        "kserve_inference_count_total",
        "up",
    }


def test_the_code_defines_the_metrics_the_seeds_name() -> None:
    # A negative control for the scan: these are defined, a made-up one is not.
    samples = exported_samples()
    for name in (
        "kserve_inference_count_total",
        "kserve_inference_duration_seconds_bucket",
        "request_predict_seconds_bucket",
        "wharf_router_prefix_blocks_total",
        "wharf_router_pod_kv_cache_usage",  # a GaugeMetricFamily of a custom collector
        "wharf_llm_worker_info",
        "wharf_controller_reconciles_total",
    ):
        assert name in samples, name
    assert "kserve_inference_count" not in samples  # a Counter's samples end in _total
    assert "wharf_made_up_metric" not in samples


def test_every_panel_metric_is_exported() -> None:
    samples = exported_samples()
    targets = _targets()
    assert targets, f"{DASHBOARD}: no queries"
    unknown = {
        (title, name)
        for title, expr in targets
        for name in promql_metrics(expr)
        if name not in samples
    }
    assert not unknown, f"panels read metrics nothing exports: {sorted(unknown)}"
    for var in _dashboard()["templating"]["list"]:
        query = var.get("definition") or ""
        for name in re.findall(r"label_values\(\s*([\w:]+)\s*,", query):
            assert name in samples, f"variable {var['name']}: {name}"


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("request rate", r"^Request rate$"),
        ("latency percentiles", r"^Latency percentiles$"),
        ("errors", r"^Errors$"),
        ("replicas", r"[Rr]eplicas"),
        ("TTFT", r"^Time to first token$"),
        ("tokens/s", r"^Tokens per second$"),
        ("KV-cache use", r"^KV-cache use$"),
        ("router hit rate", r"^Prefix-cache hit rate$"),
    ],
)
def test_the_dashboard_has_the_panel(what: str, pattern: str) -> None:
    titles = [p["title"] for p in _dashboard()["panels"] if p.get("targets")]
    assert any(re.search(pattern, t) for t in titles), f"no {what} panel in {titles}"


def test_panels_use_the_datasource_variable() -> None:
    dash = _dashboard()
    assert any(v["type"] == "datasource" for v in dash["templating"]["list"])
    for panel in dash["panels"]:
        if panel.get("targets"):
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"]), "panel ids repeat"


def test_vllm_names_are_vllms_own() -> None:
    """The vLLM names above, against the installed vLLM's sources (the engine environment)."""
    from wharf_e2e.vllm_servers import require_engine

    python = require_engine()
    # found, not imported: importing vLLM takes seconds
    where = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('vllm').origin)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    metrics_src = Path(where).parent / "v1" / "metrics"
    text = "\n".join(p.read_text() for p in metrics_src.rglob("*.py"))
    for name in VLLM:
        assert f'"{name}"' in text, f"{name} is not defined by vLLM at {metrics_src}"
    assert importlib.util.find_spec("vllm") is None, "vLLM must stay out of the workspace"


# --- scrape targets ------------------------------------------------------------------------


def _monitors() -> dict[str, dict[str, Any]]:
    out = {}
    for path in MONITORING.glob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        obj = yaml.safe_load(path.read_text())
        out[obj["metadata"]["name"]] = obj
    return out


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = expr["key"], expr["operator"]
        if op == "Exists" and key not in labels:
            return False
        if op == "In" and labels.get(key) not in expr["values"]:
            return False
    return True


def test_the_component_lists_every_monitor_and_the_dashboard() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["dashboards/wharf.json"]
    assert generator["options"]["labels"]["grafana_dashboard"] == "1"
    kinds = {m["kind"] for m in _monitors().values()}
    assert kinds == {"ServiceMonitor", "PodMonitor"}


def test_the_model_server_monitor_selects_the_services_the_controller_creates() -> None:
    from wharf_controller.render import render_documents

    # the example with the built-in runtimes, as the cluster holds them
    paths = [
        ROOT / "examples" / "sklearn-iris.yaml",
        *(ROOT / "deploy/base/runtimes").glob("*.yaml"),
    ]
    docs = [d for p in paths for d in yaml.safe_load_all(p.read_text())]
    rendered = render_documents([d for d in docs if d], mode="Standard")
    services = [o for o in rendered if o["kind"] == "Service"]
    assert services, "the example renders no Service"
    monitor = _monitors()["wharf-model-servers"]
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = monitor["spec"]["endpoints"]
    for service in services:
        assert _selects(monitor["spec"]["selector"], service["metadata"]["labels"]), service
        ports = {p.get("name") for p in service["spec"]["ports"]}
        assert endpoint["port"] in ports, (endpoint, ports)


def test_the_llm_worker_monitor_selects_the_serving_pods_of_the_plan() -> None:
    from wharf_api import default, parse_object
    from wharf_api.llm.plan import plan_llm_inference_service

    docs = yaml.safe_load_all((ROOT / "examples" / "llm-inference-service.yaml").read_text())
    (llm,) = [d for d in docs if d and d.get("kind") == "LLMInferenceService"]
    plan = plan_llm_inference_service(default(parse_object(llm)), {})
    monitor = _monitors()["wharf-llm-workers"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for workload in plan.workloads:
        assert _selects(monitor["spec"]["selector"], workload.labels), workload.labels
        pod = workload.leader or workload.worker
        assert pod is not None
        ports = {p.get("name") for c in pod.containers for p in c.ports}
        assert endpoint["port"] in ports, (endpoint, ports)
    gateways = _monitors()["wharf-llm-gateways"]["spec"]["selector"]
    for workload in plan.workloads:
        assert not _selects(gateways, workload.labels), "a worker is scraped as a gateway"
