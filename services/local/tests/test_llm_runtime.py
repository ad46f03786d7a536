"""An LLMInferenceService on the local runtime with real processes and no vLLM: the engine
simulator (`wharf-engine-sim`, an OpenAI server that speaks vLLM's metrics) stands in for the
engine, given through a preset in the `kserve` namespace, behind the real `wharf-router
gateway`. What vLLM itself does under `wharf up` is e2e/local/test_llm_wharf_up.py."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from wharf_e2e.testing import http_server_thread, until
from wharf_local.home import Home
from wharf_local.llms import LLMService
from wharf_local.runtime import LocalRuntime
from wharf_local.settings import Settings

pytestmark = pytest.mark.slow


def preset(namespace: str = "kserve") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceServiceConfig",
        "metadata": {"name": "engine-sim", "namespace": namespace},
        "spec": {
            "template": {
                "containers": [
                    {
                        "name": "main",
                        "command": ["wharf-engine-sim"],
                        "args": ["--port", "8000", "--model", "tiny", "--time-scale", "0"],
                    }
                ]
            }
        },
    }


def llmisvc(uri: str, replicas: int = 2, scheduler: bool = True) -> dict[str, Any]:
    router: dict[str, Any] = {"route": {}, "scheduler": {}} if scheduler else {"route": {}}
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService",
        "metadata": {"name": "sim", "namespace": "team"},
        "spec": {
            "model": {"uri": uri, "name": "tiny"},
            "replicas": replicas,
            "router": router,
            "baseRefs": [{"name": "engine-sim"}],
        },
    }


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    rt = LocalRuntime(Home(tmp_path / "home"), Settings(activation_timeout_s=30))
    rt.start()
    yield rt
    await rt.close()


@pytest.fixture
def model(tmp_path: Path) -> str:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder.as_uri()


def ready(s: LLMService) -> str:
    return next((c["status"] for c in s.conditions if c["type"] == "Ready"), "Unknown")


def has_config(folder: str) -> bool:
    return Path(folder, "config.json").exists()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def chat(port: int) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={
                "model": "tiny",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4,
            },
            timeout=30,
        )


@pytest.mark.timeout(180)
async def test_workers_behind_the_gateway_become_ready_answer_and_stop(
    runtime: LocalRuntime, model: str
) -> None:
    results = runtime.apply([llmisvc(model), preset()])
    assert [(r.kind, r.action, r.error) for r in results] == [
        ("LLMInferenceServiceConfig", "created", None),
        ("LLMInferenceService", "created", None),
    ]
    s = runtime.llms[("team", "sim")]
    await until(lambda: ready(s) == "True", "Ready", timeout_s=120)
    assert runtime.hosts["sim-team.example.com"] == ("team", "sim", "llm")
    assert [u.state for u in s.workers] == ["ready", "ready"]
    # the model came through the cache, and the preset's command was rewritten
    assert s.model_dirs is not None
    cached = s.model_dirs["/mnt/models"]
    assert has_config(cached)
    assert s.router is not None
    for u in s.workers:
        assert u.argv[u.argv.index("--port") + 1] == str(u.port)
        assert f"--endpoint http://127.0.0.1:{u.port}" in " ".join(s.router.argv)
    answer = await chat(s.router.port)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]

    pids = [u.process.pid for u in [*s.workers, s.router] if u.process and u.process.pid]
    assert len(pids) == 3
    assert await runtime.delete_object("LLMInferenceService", "team", "sim")
    assert "sim-team.example.com" not in runtime.hosts
    assert not any(alive(p) for p in pids)


@pytest.mark.timeout(120)
async def test_without_a_scheduler_the_ingress_balances_the_workers(
    runtime: LocalRuntime, model: str
) -> None:
    runtime.apply([preset("team"), llmisvc(model, scheduler=False)])
    s = runtime.llms[("team", "sim")]
    await until(lambda: ready(s) == "True", "Ready", timeout_s=90)
    assert s.router is None
    first = await runtime.llm_runner.acquire(s, 5)
    second = await runtime.llm_runner.acquire(s, 5)
    # the least busy worker: two requests in flight are on two workers
    assert {first.label, second.label} == {"sim-kserve-0", "sim-kserve-1"}
    answer = await chat(first.port)
    assert answer.status_code == 200, answer.text


async def test_an_unknown_base_ref_is_refused_naming_it(runtime: LocalRuntime, model: str) -> None:
    (result,) = runtime.apply([llmisvc(model)])
    assert result.action == "invalid"
    assert "engine-sim" in (result.error or "")


@pytest.mark.timeout(60)
async def test_a_missing_model_is_a_download_failure(runtime: LocalRuntime, tmp_path: Path) -> None:
    runtime.apply([preset(), llmisvc((tmp_path / "nothing").as_uri())])
    s = runtime.llms[("team", "sim")]

    def reason() -> str | None:
        return next((c.get("reason") for c in s.conditions if c["type"] == "Ready"), None)

    await until(lambda: reason() == "ModelDownloadFailed", "the failure", timeout_s=30)
    assert s.workers == []


@pytest.mark.timeout(60)
async def test_a_failed_download_is_retried_when_applied_again(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    folder = tmp_path / "later"
    docs = [preset(), llmisvc(folder.as_uri(), replicas=1, scheduler=False)]
    runtime.apply(docs)
    s = runtime.llms[("team", "sim")]

    def reason() -> str | None:
        return next((c.get("reason") for c in s.conditions if c["type"] == "Ready"), None)

    await until(lambda: reason() == "ModelDownloadFailed", "the failure", timeout_s=25)
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    again = runtime.apply(docs)
    assert again[1].action == "retried"
    await until(lambda: s.model_dirs is not None, "the model after the retry", timeout_s=25)
    assert s.failure is None
    # nothing left to retry: the same manifest once more changes nothing
    assert runtime.apply(docs)[1].action == "unchanged"


class FailingSlowly(BaseHTTPRequestHandler):
    """Serves one small file; a GET that comes while `fail` is set gets a 404, 3 s later (a
    download that fails is under way that long)."""

    fail: threading.Event
    failed: list[str]

    def do_GET(self) -> None:
        if self.fail.is_set():
            self.failed.append(self.path)  # the decision is taken: the test may clear `fail`
            time.sleep(3.0)
            self.send_error(404)
            return
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing_slowly() -> Iterator[tuple[str, threading.Event, list[str]]]:
    fail, failed = threading.Event(), []
    handler = type("H", (FailingSlowly,), {"fail": fail, "failed": failed})
    with http_server_thread(handler) as url:
        yield f"{url}/config.json", fail, failed


@pytest.mark.timeout(90)
async def test_an_apply_during_a_backoff_retry_retries_again_at_once(
    runtime: LocalRuntime, failing_slowly: tuple[str, threading.Event, list[str]]
) -> None:
    uri, fail, failed = failing_slowly
    fail.set()
    docs = [preset(), llmisvc(uri, replicas=1, scheduler=False)]
    runtime.apply(docs)
    s = runtime.llms[("team", "sim")]
    await until(lambda: s.failure is not None, "the failure", timeout_s=25)
    # the backoff's retry is under way, and the source has already decided it fails
    await until(lambda: s.fetching and len(failed) >= 2, "the backoff retry", timeout_s=25)
    fail.clear()
    assert runtime.apply(docs)[1].action == "retried"
    assert s.failure is None
    await until(lambda: s.model_dirs is not None, "the model after the retry", timeout_s=25)
    assert any(e.reason == "ModelDownloadFailed" and "retrying now" in e.message for e in s.events)
