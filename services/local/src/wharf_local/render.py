"""Tables and text for `wharf get` and `wharf describe`, from the daemon's JSON. Pure."""

from __future__ import annotations

import json
from typing import Any

import yaml
from rich.table import Table


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def condition(item: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in item["status"].get("conditions", []) if c["type"] == type_), None)


def traffic_columns(item: dict[str, Any]) -> tuple[str, str]:
    """PREV and LATEST as KServe's printer columns: the percent tagged prev and the latest."""
    components = item["status"].get("components", {})
    predictor = components.get("predictor", {})
    prev = latest = ""
    for target in predictor.get("traffic", []):
        if target.get("tag") == "prev":
            prev = str(target["percent"])
        if target.get("latestRevision"):
            latest = str(target["percent"])
    return prev, latest


def _table(columns: list[str]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in columns:
        table.add_column(col)
    return table


def get_table(
    items: list[dict[str, Any]], *, wide: bool = False, namespaces: bool = False
) -> Table:
    """KServe's InferenceService printer columns; `wide` adds the priority-1 ones."""
    columns = ["NAME", "URL", "READY", "PREV", "LATEST"]
    if wide:
        columns += ["PREVROLLEDOUTREVISION", "LATESTREADYREVISION"]
    table = _table(["NAMESPACE"] * namespaces + [*columns, "AGE"])
    for item in items:
        ready = condition(item, "Ready")
        prev, latest = traffic_columns(item)
        predictor = item["status"].get("components", {}).get("predictor", {})
        row = [
            item["metadata"]["name"],
            item["status"].get("url", ""),
            ready["status"] if ready else "Unknown",
            prev,
            latest,
        ]
        if wide:
            row += [
                predictor.get("previousRolledoutRevision") or "",
                predictor.get("latestReadyRevision") or "",
            ]
        ns = [item["metadata"].get("namespace", "default")] * namespaces
        table.add_row(*ns, *row, _age(item["local"]["ageSeconds"]))
    return table


def _runtime_row(item: dict[str, Any], wide: bool) -> list[str]:
    spec = item.get("spec") or {}
    formats = [f.get("name", "") for f in spec.get("supportedModelFormats") or []]
    containers = [c.get("name", "") for c in spec.get("containers") or []]
    row = [
        str(bool(spec.get("disabled", False))).lower(),
        ",".join(formats),
        ",".join(containers),
    ]
    if wide:
        protocols = spec.get("protocolVersions") or []
        row += [",".join(protocols), "built-in" if item.get("local", {}).get("builtin") else ""]
    return row


def object_table(
    kind: str, items: list[dict[str, Any]], *, wide: bool = False, namespaces: bool = False
) -> Table:
    """A table for any kind but InferenceService (runtimes get KServe's printer columns)."""
    runtime = kind in ("ServingRuntime", "ClusterServingRuntime")
    columns = ["NAME"]
    if runtime:
        columns += ["DISABLED", "MODELTYPE", "CONTAINERS"]
        if wide:
            columns += ["PROTOCOLS", "SOURCE"]
    table = _table(["NAMESPACE"] * namespaces + columns)
    for item in items:
        meta = item.get("metadata") or {}
        ns = [meta.get("namespace", "")] * namespaces
        row = [meta.get("name", "")] + (_runtime_row(item, wide) if runtime else [])
        table.add_row(*ns, *row)
    return table


def object_lines(item: dict[str, Any]) -> list[str]:
    """`describe` for a kind other than InferenceService: identity, then the defaulted spec."""
    meta = item.get("metadata") or {}
    lines = [
        f"Name:         {meta.get('name')}",
        *([f"Namespace:    {meta['namespace']}"] if meta.get("namespace") else []),
        f"Kind:         {item.get('kind')}",
        f"API Version:  {item.get('apiVersion')}",
    ]
    if item.get("local", {}).get("builtin"):
        lines.append("Source:       built in (deploy/base/runtimes), cannot be deleted")
    for key in ("labels", "annotations"):
        if meta.get(key):
            lines.append(f"{key.capitalize()}:")
            lines += [f"  {k}={v}" for k, v in meta[key].items()]
    lines.append("Spec:")
    spec = yaml.safe_dump(item.get("spec") or {}, sort_keys=False).rstrip("\n")
    lines += [f"  {line}" for line in spec.splitlines()]
    return lines


SAMPLE_ROW = [6.8, 2.8, 4.8, 1.4]  # one iris row, the examples' model


def _sample(inputs: list[dict[str, Any]]) -> tuple[str, list[int], str, Any] | None:
    """(name, shape, datatype, data) for the model's first input when its metadata says."""
    if not inputs or not isinstance(inputs[0], dict):
        return None
    first = inputs[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in first.get("shape") or []]
    if not shape or not first.get("name") or not first.get("datatype"):
        return None
    size = 1
    for d in shape:
        size *= d
    return str(first["name"]), shape, str(first["datatype"]), [0] * size


def curl_lines(item: dict[str, Any], ingress: str, inputs: list[dict[str, Any]]) -> list[str]:
    """Two curls (by Host, by path) in the service's protocol, with an inline body.

    V2 services get `/v2/models/{name}/infer` and a V2 body; V1 services `:predict` and
    `instances`. The body follows the model's input metadata when the server reports it, else
    it is one iris row (the examples' model).
    """
    meta = item["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    predictor = (item.get("spec") or {}).get("predictor") or {}
    protocol = str((predictor.get("model") or {}).get("protocolVersion") or "v1")
    sample = _sample(inputs)
    if protocol.endswith("v2"):
        path = f"/v2/models/{name}/infer"
        tensor_name, shape, datatype, data = sample or ("input-0", [1, 4], "FP32", [SAMPLE_ROW])
        body: dict[str, Any] = {
            "inputs": [{"name": tensor_name, "shape": shape, "datatype": datatype, "data": data}]
        }
    else:
        path = f"/v1/models/{name}:predict"
        body = {"instances": [SAMPLE_ROW] if sample is None else [sample[3]]}
    host = str(item["status"].get("url", "")).removeprefix("http://").removeprefix("https://")
    data = json.dumps(body)
    return [
        f"curl -H 'Host: {host}' -H 'Content-Type: application/json' {ingress}{path} -d '{data}'",
        f"curl -H 'Content-Type: application/json' {ingress}/serving/{namespace}/{name}{path}"
        f" -d '{data}'",
    ]


def describe_lines(item: dict[str, Any]) -> list[str]:
    meta, st = item["metadata"], item["status"]
    lines = [
        f"Name:        {meta['name']}",
        f"Namespace:   {meta.get('namespace', 'default')}",
        f"URL:         {st.get('url', '')}",
        f"Generation:  {meta.get('generation')} (observed {st.get('observedGeneration')})",
        f"Created:     {meta.get('creationTimestamp')}",
        "Conditions:",
    ]
    for c in st.get("conditions", []):
        why = f"  {c.get('reason', '')}: {c.get('message', '')}" if c.get("reason") else ""
        lines.append(f"  {c['type']:<18} {c['status']:<6} {c.get('lastTransitionTime', '')}{why}")
    for name, comp in st.get("components", {}).items():
        lines.append(f"Component {name}:")
        chosen = item.get("local", {}).get("runtimes", {}).get(name)
        if chosen and chosen.get("runtime"):
            lines.append(
                f"  Runtime:           {chosen['runtime']} ({chosen.get('kind')}, format "
                f"{chosen.get('modelFormat')}, protocol {chosen.get('protocol')})"
            )
            lines.append(f"  Command:           {' '.join(chosen.get('command') or []) or '-'}")
        lines.append(f"  Latest created:    {comp.get('latestCreatedRevision')}")
        lines.append(f"  Latest ready:      {comp.get('latestReadyRevision')}")
        lines.append(f"  Latest rolled out: {comp.get('latestRolledoutRevision')}")
        lines.append(f"  Prev rolled out:   {comp.get('previousRolledoutRevision')}")
        traffic = ", ".join(
            f"{t['revisionName']} {t['percent']}% ({t['tag']})" for t in comp.get("traffic", [])
        )
        lines.append(f"  Traffic:           {traffic or '-'}")
        for rev in item["local"]["revisions"].get(name, []):
            lines.append(f"  Revision {rev['name']}  model {rev.get('storageUri')}")
            if rev.get("failure"):
                lines.append(f"    failed: {rev['failure'][0]}: {rev['failure'][1]}")
            for r in rev["replicas"]:
                grpc = f" grpc :{r['grpcPort']}" if r.get("grpcPort") else ""
                lines.append(
                    f"    replica {r['index']}: {r['state']} pid {r['pid']} http :{r['httpPort']}"
                    f"{grpc} in-flight {r['inflight']} restarts {r['crashes']}"
                )
    lines.append("Events:")
    for e in item["local"]["events"][-20:]:
        lines.append(
            f"  {e['time']}  {e['type']:<7} {e['reason']:<18} {e['object']}: {e['message']}"
        )
    return lines


# ---- InferenceGraph ---------------------------------------------------------------------------


def graph_table(items: list[dict[str, Any]], *, namespaces: bool = False) -> Table:
    """KServe's InferenceGraph printer columns: NAME, URL, READY, AGE."""
    table = _table(["NAMESPACE"] * namespaces + ["NAME", "URL", "READY", "AGE"])
    for item in items:
        ready = condition(item, "Ready")
        ns = [item["metadata"].get("namespace", "default")] * namespaces
        table.add_row(
            *ns,
            item["metadata"]["name"],
            item["status"].get("url", ""),
            ready["status"] if ready else "Unknown",
            _age(item["local"]["ageSeconds"]),
        )
    return table


def graph_curl_lines(item: dict[str, Any], ingress: str) -> list[str]:
    """Two curls (by Host, by path) posting one iris row to the graph's root."""
    meta = item["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    host = str(item["status"].get("url", "")).removeprefix("http://").removeprefix("https://")
    data = json.dumps({"instances": [SAMPLE_ROW]})
    return [
        f"curl -H 'Host: {host}' -H 'Content-Type: application/json' {ingress}/ -d '{data}'",
        f"curl -H 'Content-Type: application/json' {ingress}/serving/{namespace}/{name}/"
        f" -d '{data}'",
    ]


def graph_describe_lines(item: dict[str, Any]) -> list[str]:
    """`describe ig NAME`: conditions, nodes and steps, the router process, events."""
    meta, st, local = item["metadata"], item["status"], item.get("local", {})
    lines = [
        f"Name:        {meta['name']}",
        f"Namespace:   {meta.get('namespace', 'default')}",
        f"URL:         {st.get('url', '')}",
        f"Generation:  {meta.get('generation')} (observed {st.get('observedGeneration')})",
        f"Created:     {meta.get('creationTimestamp')}",
        "Conditions:",
    ]
    for c in st.get("conditions", []):
        why = f"  {c.get('reason', '')}: {c.get('message', '')}" if c.get("reason") else ""
        lines.append(f"  {c['type']:<18} {c['status']:<6} {c.get('lastTransitionTime', '')}{why}")
    lines.append("Nodes:")
    for name, node in ((item.get("spec") or {}).get("nodes") or {}).items():
        lines.append(f"  {name} ({node.get('routerType')}):")
        for step in node.get("steps") or []:
            target = step.get("nodeName") or step.get("serviceName") or step.get("serviceUrl")
            extras = [
                f"{k}={step[k]}"
                for k in ("data", "weight", "condition", "dependency", "mapPredictionsToInstances")
                if step.get(k) is not None
            ]
            label = f"{step['name']}: " if step.get("name") else ""
            lines.append(f"    - {label}{target}" + (f"  ({', '.join(extras)})" if extras else ""))
    router = local.get("router") or {}
    lines.append(
        f"Router:      {router.get('state')} pid {router.get('pid')} http :{router.get('httpPort')}"
        f" in-flight {router.get('inflight')} restarts {router.get('restarts')}"
    )
    if router.get("log"):
        lines.append(f"  Log:       {router['log']}")
    if local.get("missingServices"):
        lines.append(f"Waiting for: {', '.join(local['missingServices'])}")
    lines.append("Events:")
    for e in local.get("events", [])[-20:]:
        lines.append(
            f"  {e['time']}  {e['type']:<7} {e['reason']:<18} {e['object']}: {e['message']}"
        )
    return lines
