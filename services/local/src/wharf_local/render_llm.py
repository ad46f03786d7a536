"""`wharf get`, `describe` and the `up` hints for LLMInferenceServices, from the daemon's JSON.
Pure."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from wharf_local.render import _age, _table, condition


def llm_table(items: list[dict[str, Any]], *, namespaces: bool = False) -> Table:
    """KServe's LLMInferenceService printer columns: NAME, URL, READY, REASON, AGE."""
    table = _table(["NAMESPACE"] * namespaces + ["NAME", "URL", "READY", "REASON", "AGE"])
    for item in items:
        ready = condition(item, "Ready") or {}
        ns = [item["metadata"].get("namespace", "default")] * namespaces
        table.add_row(
            *ns,
            item["metadata"]["name"],
            item["status"].get("url", ""),
            ready.get("status", "Unknown"),
            ready.get("reason", ""),
            _age(item["local"]["ageSeconds"]),
        )
    return table


def llm_curl_lines(item: dict[str, Any], ingress: str) -> list[str]:
    """A chat completion by Host and by path, and the `openai` client's base URL."""
    meta = item["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    host = str(item["status"].get("url", "")).removeprefix("http://").removeprefix("https://")
    model = item.get("local", {}).get("servedModelName", name)
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
    )
    return [
        f"curl -H 'Host: {host}' -H 'Content-Type: application/json' "
        f"{ingress}/v1/chat/completions -d '{body}'",
        f"curl -H 'Content-Type: application/json' "
        f"{ingress}/serving/{namespace}/{name}/v1/chat/completions -d '{body}'",
        f"openai: OpenAI(base_url='{ingress}/serving/{namespace}/{name}/v1', api_key='none')",
    ]


def _unit_line(u: dict[str, Any]) -> str:
    where = f" http :{u['httpPort']}" if u.get("httpPort") else ""
    role = f" role {u['role']}" if u.get("role") else ""
    line = (
        f"    {u['name']:<28} {u['state']:<9} pid {u.get('pid')}{where}{role}"
        f" in-flight {u.get('inflight')} restarts {u.get('restarts')}"
    )
    if u.get("lastCrash"):
        line += f"\n      last crash: {u['lastCrash']}"
    return line


def llm_describe_lines(item: dict[str, Any]) -> list[str]:
    """`describe llmisvc NAME`: conditions, model, workloads and their processes, the router,
    events."""
    meta, st, local = item["metadata"], item["status"], item.get("local", {})
    model = local.get("model") or {}
    lines = [
        f"Name:        {meta['name']}",
        f"Namespace:   {meta.get('namespace', 'default')}",
        f"URL:         {st.get('url', '')}",
        f"Generation:  {meta.get('generation')} (observed {st.get('observedGeneration')})",
        f"Created:     {meta.get('creationTimestamp')}",
        f"Model:       {model.get('uri')} as {local.get('servedModelName')}",
    ]
    for mount, folder in (model.get("dirs") or {}).items():
        lines.append(f"  {mount} -> {folder}")
    if model.get("failure"):
        lines.append(f"  failure: {model['failure']}")
    lines.append("Conditions:")
    for c in st.get("conditions", []):
        why = f"  {c.get('reason', '')}: {c.get('message', '')}" if c.get("reason") else ""
        lines.append(f"  {c['type']:<22} {c['status']:<6} {c.get('lastTransitionTime', '')}{why}")
    lines.append("Workloads:")
    for name, w in (local.get("workloads") or {}).items():
        shape = f"{w['replicas']} x {w['size']} processes" if w["size"] > 1 else f"{w['replicas']}"
        lines.append(
            f"  {name} ({w['component']}, role {w['role']}): replicas {shape}, ready {w['ready']}"
        )
        lines += [_unit_line(u) for u in w.get("workers", [])]
    router = local.get("router")
    if router:
        lines.append("Router:")
        lines.append(_unit_line(router))
    else:
        lines.append("Router:      none (no scheduler: the ingress balances the workers)")
    lines.append("Events:")
    for e in local.get("events", [])[-20:]:
        lines.append(
            f"  {e['time']}  {e['type']:<7} {e['reason']:<18} {e['object']}: {e['message']}"
        )
    return lines


def llm_log_paths(item: dict[str, Any]) -> list[str]:
    """Every process log of the service: workers by workload, then the router."""
    local = item.get("local", {})
    paths = [
        u["log"]
        for w in (local.get("workloads") or {}).values()
        for u in w.get("workers", [])
        if u.get("log")
    ]
    router = local.get("router")
    if router and router.get("log"):
        paths.append(router["log"])
    return paths
