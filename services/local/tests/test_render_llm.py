"""`wharf get`, `describe`, `logs` and the `up` hints for an LLMInferenceService (pure)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from wharf_local.render_llm import llm_curl_lines, llm_describe_lines, llm_log_paths, llm_table


def worker(name: str, state: str, port: int) -> dict[str, Any]:
    return {
        "name": name, "state": state, "pid": 10, "httpPort": port, "inflight": 0, "restarts": 0,
        "role": "both", "replica": 0, "rank": 0, "log": f"/h/logs/default/m/main/{name}.log",
    }  # fmt: skip


ITEM: dict[str, Any] = {
    "metadata": {"name": "m", "namespace": "default", "generation": 1},
    "status": {
        "url": "http://m-default.example.com",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "MainWorkloadReady",
                "status": "False",
                "reason": "Starting",
                "message": "1/2",
            },
            {"type": "Ready", "status": "False", "reason": "Starting", "message": "1/2"},
        ],
    },
    "local": {
        "ageSeconds": 5,
        "servedModelName": "tiny",
        "model": {"uri": "file:///m", "dirs": {"/mnt/models": "/cache/x"}, "failure": None},
        "workloads": {
            "m-kserve": {
                "component": "main",
                "role": "both",
                "replicas": 2,
                "size": 1,
                "ready": 1,
                "workers": [
                    worker("m-kserve-0", "ready", 9000),
                    worker("m-kserve-1", "starting", 9001),
                ],
            }
        },
        "router": {**worker("router", "ready", 9100), "log": "/h/logs/default/m/router/router.log"},
        "events": [],
    },
}


def test_table_has_kserves_columns() -> None:
    console = Console(width=200, record=True)
    console.print(llm_table([ITEM]))
    lines = console.export_text().splitlines()
    assert lines[0].split() == ["NAME", "URL", "READY", "REASON", "AGE"]
    assert lines[1].split() == ["m", "http://m-default.example.com", "False", "Starting", "5s"]


def test_describe_shows_each_process_and_the_router() -> None:
    text = "\n".join(llm_describe_lines(ITEM))
    assert "m-kserve (main, role both): replicas 2, ready 1" in text
    assert "m-kserve-1" in text and "starting" in text and "http :9001" in text
    assert "Router:\n    router" in text
    assert "/mnt/models -> /cache/x" in text


def test_logs_are_every_worker_then_the_router() -> None:
    assert [p.rsplit("/", 1)[1] for p in llm_log_paths(ITEM)] == [
        "m-kserve-0.log",
        "m-kserve-1.log",
        "router.log",
    ]


def test_curls_reach_chat_by_host_and_by_path() -> None:
    host, path, client = llm_curl_lines(ITEM, "http://127.0.0.1:8080")
    assert "-H 'Host: m-default.example.com'" in host and "/v1/chat/completions" in host
    assert "http://127.0.0.1:8080/serving/default/m/v1/chat/completions" in path
    assert '"model": "tiny"' in path
    assert "base_url='http://127.0.0.1:8080/serving/default/m/v1'" in client
