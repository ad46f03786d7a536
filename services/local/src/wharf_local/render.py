"""Tables and text for `wharf get` and `wharf describe`, from the daemon's JSON. Pure."""

from __future__ import annotations

from typing import Any

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


def get_table(items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("NAME", "URL", "READY", "PREV", "LATEST", "AGE"):
        table.add_column(col)
    for item in items:
        ready = condition(item, "Ready")
        prev, latest = traffic_columns(item)
        table.add_row(
            item["metadata"]["name"],
            item["status"].get("url", ""),
            ready["status"] if ready else "Unknown",
            prev,
            latest,
            _age(item["local"]["ageSeconds"]),
        )
    return table


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
