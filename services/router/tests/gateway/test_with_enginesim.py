"""`wharf-router gateway` as a real process in front of simulated vLLM pods (`wharf-engine-sim`,
each fleet one process): the real `openai` client, streaming and not, disconnects, a pod
killed mid-run, the P/D hand-off, and prefix-aware routing measured by the pods' own
prefix-cache counters against an oracle placement."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from wharf_e2e.enginesim.fleet import SimFleet, metric, scrape
from wharf_e2e.testing import exchange_until_closed, free_port, wait_until

MODEL = "sim-model"
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


class GatewayProcess:
    """`python -m wharf_router.cli gateway ...` on a free port; a context manager."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.args = args
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GatewayProcess:
        argv = [sys.executable, "-m", "wharf_router.cli", "gateway", "--host", "127.0.0.1",
                "--port", str(self.port), "--scrape-interval", "0.05", *self.args]  # fmt: skip
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        wait_until(self._ready, f"the gateway on {self.port} (log {self.log})", 60)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the gateway exited with {self.process.returncode}: {self.log.read_text()[-2000:]}"
            )
        models = httpx.get(f"{self.url}/v1/models", timeout=2).json()
        return bool(models["data"])

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def metrics(self) -> dict[str, float]:
        return scrape(self.url)


def endpoints(fleet: SimFleet, roles: list[str] | None = None) -> list[str]:
    out = []
    for i, url in enumerate(fleet.urls):
        out += ["--endpoint", f"{url}={roles[i]}" if roles else url]
    return out


def oai(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def fleet() -> Iterator[SimFleet]:
    # simulated time is not waited for: answers are exact and quick
    with SimFleet(2, ["--time-scale", "0"]) as f:
        yield f


def test_streamed_and_whole_answers_match_the_pods_own(fleet: SimFleet, tmp_path: Path) -> None:
    direct = oai(fleet.urls[0]).completions.create(
        model=MODEL, prompt="tell me a story", max_tokens=10
    )
    with GatewayProcess(endpoints(fleet), tmp_path / "gw.log") as gw:
        client = oai(gw.url)
        whole = client.completions.create(model=MODEL, prompt="tell me a story", max_tokens=10)
        assert whole.choices[0].text == direct.choices[0].text
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "hello there"}],
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        chat = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hello there"}], max_tokens=8
        )
        assert text == chat.choices[0].message.content
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens == 8
        m = gw.metrics()
        assert metric(m, "wharf_router_completion_tokens_total", model=MODEL) == 10 + 8 + 8
        assert metric(m, "wharf_router_requests_total", model=MODEL, code="200") == 3


def test_client_heads_are_bounded_in_size_and_time(tmp_path: Path) -> None:
    """The gateway faces clients as the model server does: a head over the size limit gets 431,
    one that takes longer than the head timeout 408, both with a close; a stream that lasts
    longer than the head timeout is not cut (the clock on its head stopped when the head was
    in; the body clocks are tested in wharf-datapath's test_http_head)."""
    with (
        SimFleet(1, ["--time-scale", "1"]) as slow,
        GatewayProcess(
            endpoints(slow), tmp_path / "gw.log", env={"WHARF_HTTP_HEAD_TIMEOUT": "0.5"}
        ) as gw,
    ):
        big = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n"
        answer = exchange_until_closed(gw.port, [big])
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"connection: close" in answer

        trickle = [bytes([c]) for c in b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefgh"]
        answer = exchange_until_closed(gw.port, trickle, pause_s=0.1)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"not received within 0.5 s" in answer

        started = time.monotonic()
        chunks = list(
            oai(gw.url).chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "a slow answer"}],
                max_tokens=150,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert time.monotonic() - started > 1.0  # longer than the head timeout, twice over
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens == 150


def test_a_disconnect_aborts_the_request_on_the_pod(tmp_path: Path) -> None:
    # real time here: 2,000 tokens take about 30 s of the pod's (scaled) time
    with (
        SimFleet(1, ["--time-scale", "1"]) as slow,
        GatewayProcess(endpoints(slow), tmp_path / "gw.log") as gw,
    ):
        body = {"model": MODEL, "prompt": "a long story", "max_tokens": 2000, "stream": True}
        with httpx.stream("POST", f"{gw.url}/v1/completions", json=body, timeout=60) as r:
            for _ in r.iter_bytes():
                break
        pod = slow.urls[0]
        wait_until(
            lambda: metric(scrape(pod), "vllm:num_requests_running") == 0,
            "the pod to drop the request",
            30,
        )
        assert metric(scrape(pod), "vllm:generation_tokens_total") < 2000
        wait_until(
            lambda: metric(gw.metrics(), "wharf_router_client_disconnects_total") == 1,
            "the gateway to count it",
            10,
        )


def test_a_pod_killed_mid_run_fails_no_request(tmp_path: Path) -> None:
    # two processes: one pod that dies, two that live; answers take about a second
    with (
        SimFleet(1, ["--time-scale", "0.5"]) as doomed,
        SimFleet(2, ["--time-scale", "0.5"]) as lasting,
        GatewayProcess(
            [*endpoints(doomed), *endpoints(lasting), "--policy", "round-robin"],
            tmp_path / "gw.log",
        ) as gw,
    ):

        async def run() -> list[int]:
            async with httpx.AsyncClient(timeout=120) as http:

                async def one(i: int) -> int:
                    body = {"model": MODEL, "prompt": f"request number {i}", "max_tokens": 100}
                    return (await http.post(f"{gw.url}/v1/completions", json=body)).status_code

                tasks = [asyncio.create_task(one(i)) for i in range(24)]
                pod = doomed.urls[0]

                def busy() -> bool:
                    return metric(scrape(pod), "vllm:num_requests_running") >= 4

                await asyncio.to_thread(wait_until, busy, "requests on the pod to kill", 60)
                assert doomed.process is not None
                doomed.process.kill()  # SIGKILL: its requests die unanswered
                return await asyncio.gather(*tasks)

        codes = asyncio.run(run())
        assert codes == [200] * 24
        m = gw.metrics()
        assert metric(m, "wharf_router_retries_total") >= 4
        assert (
            metric(m, "wharf_router_pod_healthy", pod=doomed.urls[0].removeprefix("http://")) == 0
        )


def test_prefill_decode_hand_off_moves_the_kv(tmp_path: Path) -> None:
    with (
        SimFleet(3, ["--time-scale", "0", "--role", "prefill,decode,both"]) as pd,
        # the third pod (no KV connector) is not behind the gateway: it gives the reference text
        GatewayProcess(
            ["--endpoint", f"{pd.urls[0]}=prefill", "--endpoint", f"{pd.urls[1]}=decode"],
            tmp_path / "gw.log",
        ) as gw,
    ):
        prompt = " ".join(f"token{i}" for i in range(300))
        reference = oai(pd.urls[2]).completions.create(model=MODEL, prompt=prompt, max_tokens=12)
        decode = pd.urls[1]
        # the gateway hands the pair off once by itself before a request may use it
        wait_until(lambda: warm_pairs(gw) == 1, "the P/D pair to warm up", 60)
        before = scrape(decode)
        stream = oai(gw.url).completions.create(
            model=MODEL, prompt=prompt, max_tokens=12, stream=True
        )
        text = "".join(c.choices[0].text for c in stream)
        assert text == reference.choices[0].text
        after = scrape(decode)
        external = "vllm:prompt_tokens_by_source_total"
        moved = metric(after, external, source="external_kv_transfer") - metric(
            before, external, source="external_kv_transfer"
        )
        local = metric(after, external, source="local_compute") - metric(
            before, external, source="local_compute"
        )
        assert moved >= 290 and local <= 16  # the prompt came over from the prefill pod
        m = gw.metrics()
        assert metric(m, "wharf_router_pd_handoffs_total") == 1


def warm_pairs(gw: GatewayProcess) -> float:
    return metric(gw.metrics(), "wharf_router_pd_warm_pairs")


def _sources(url: str) -> dict[str, float]:
    values = scrape(url)
    name = "vllm:prompt_tokens_by_source_total"
    return {s: metric(values, name, source=s) for s in ("local_compute", "external_kv_transfer")}


def _moved(url: str, before: dict[str, float]) -> dict[str, float]:
    after = _sources(url)
    return {s: after[s] - before[s] for s in after}


# real seconds each decode pod's first pull from a prefill engine waits (vLLM's NIXL handshake):
# long enough that the gateway's warm-up of the pair is still under way when the test's first
# request comes (the test checks that it is)
HANDSHAKE_S = "12"


def test_a_cold_pair_is_not_waited_for_and_a_restarted_pair_warms_again(tmp_path: Path) -> None:
    args = ["--time-scale", "0", "--role", "prefill,decode", "--handshake-delay", HANDSHAKE_S]
    pd = SimFleet(2, args).start()
    prefill, decode = pd.urls
    try:
        with GatewayProcess(
            ["--endpoint", f"{prefill}=prefill", "--endpoint", f"{decode}=decode"],
            tmp_path / "gw.log",
        ) as gw:
            client = oai(gw.url)
            assert warm_pairs(gw) == 0  # the warm-up waits in the simulated handshake
            before = _sources(decode)
            first = " ".join(f"one{i}" for i in range(300))
            client.completions.create(model=MODEL, prompt=first, max_tokens=4)
            # not handed off: the decode pod computed the prompt, and the request did not wait
            assert _moved(decode, before) == {"local_compute": 300, "external_kv_transfer": 0}
            m = gw.metrics()
            assert metric(m, "wharf_router_pd_cold_pairs_total") == 1
            assert metric(m, "wharf_router_pd_handoffs_total") == 0
            assert (
                "wharf_router_pd_prefill_fallbacks_total{"
                not in httpx.get(f"{gw.url}/metrics").text
            )  # a cold pair is not a failed prefill

            wait_until(lambda: warm_pairs(gw) == 1, "the P/D pair to warm up", 60)
            before = _sources(decode)
            second = " ".join(f"two{i}" for i in range(300))
            client.completions.create(model=MODEL, prompt=second, max_tokens=4)
            assert _moved(decode, before)["external_kv_transfer"] == 300
            assert metric(gw.metrics(), "wharf_router_pd_handoffs_total") == 1

            # both engines restart (new engine ids): the gateway sees them go and come back,
            # and warms the new pair before it hands off through it again
            ports = pd.ports
            pd.stop()
            for url in pd.urls:
                name = url.removeprefix("http://")
                wait_until(
                    lambda n=name: metric(gw.metrics(), "wharf_router_pod_healthy", pod=n) == 0,
                    f"the gateway to eject {name}",
                    30,
                )
            assert warm_pairs(gw) == 0
            pd = SimFleet(2, args, ports=ports).start()
            wait_until(
                lambda: metric(gw.metrics(), "wharf_router_pd_warmups_total", outcome="ok") == 2,
                "a second warm-up of the pair",
                60,
            )
            wait_until(lambda: warm_pairs(gw) == 1, "the new pair to be warm", 60)
            before = _sources(decode)
            client.completions.create(model=MODEL, prompt=first, max_tokens=4)
            assert _moved(decode, before)["external_kv_transfer"] == 300
            # the warm-up's pull paid the new pair's handshake; the request's did not
            assert metric(scrape(decode), "enginesim:kv_handshakes_total") == 1
            client.close()
    finally:
        pd.stop()


def _hit_rate(pods: list[str], before: list[dict[str, float]]) -> float:
    hits = queries = 0.0
    for url, b in zip(pods, before, strict=True):
        a = scrape(url)
        hits += metric(a, "vllm:prefix_cache_hits_total") - metric(
            b, "vllm:prefix_cache_hits_total"
        )
        queries += metric(a, "vllm:prefix_cache_queries_total") - metric(
            b, "vllm:prefix_cache_queries_total"
        )
    return hits / queries


def _workload(groups: int, turns: int) -> list[tuple[int, str]]:
    systems = [" ".join(f"g{g}w{i}" for i in range(800)) for g in range(groups)]
    return [
        (g, systems[g] + f" question {t} of group {g}") for t in range(turns) for g in range(groups)
    ]


def test_prefix_routing_matches_the_oracle_and_beats_round_robin(tmp_path: Path) -> None:
    # 7 groups on 4 pods: round robin moves each group to another pod every turn
    work = _workload(groups=7, turns=3)

    def run(url: str | None, fleet: SimFleet) -> float:
        for pod in fleet.urls:
            httpx.post(f"{pod}/reset_prefix_cache", timeout=10).raise_for_status()
        before = [scrape(pod) for pod in fleet.urls]
        for g, prompt in work:
            target = url or fleet.urls[g % len(fleet.urls)]  # None: the oracle's placement
            r = httpx.post(
                f"{target}/v1/completions",
                json={"model": MODEL, "prompt": prompt, "max_tokens": 2},
                timeout=60,
            )
            assert r.status_code == 200
        return _hit_rate(fleet.urls, before)

    with SimFleet(4, ["--time-scale", "0"]) as fleet:
        oracle = run(None, fleet)
        with GatewayProcess(
            [*endpoints(fleet), "--policy", "round-robin"], tmp_path / "rr.log"
        ) as gw:
            round_robin = run(gw.url, fleet)
        with GatewayProcess(endpoints(fleet), tmp_path / "default.log") as gw:
            default = run(gw.url, fleet)
    assert default >= 0.95 * oracle, (default, oracle, round_robin)
    assert default > round_robin, (default, oracle, round_robin)


def _exchange(sock: socket.socket) -> bytes:
    """One keep-alive GET /health on `sock`: the whole answer (b"" when the gateway closed)."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                return answer
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))  # fmt: skip
        while len(body) < length:
            body += sock.recv(4096)
    except ConnectionResetError:
        return b""
    return head + b"\r\n\r\n" + body


def test_idle_client_connections_are_kept_longer_than_the_clients_pools(
    fleet: SimFleet, tmp_path: Path
) -> None:
    # Python's client pools keep an idle connection 5 s, uvicorn's default too: a server that
    # closes at the same moment races the client's next request (a reset, one request lost).
    # The gateway keeps idle connections 75 s by default, and as long as told.
    with (
        GatewayProcess(endpoints(fleet), tmp_path / "default.log") as gw,
        socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock,
    ):
        assert _exchange(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6)
        assert _exchange(sock).startswith(b"HTTP/1.1 200")  # the same connection, still open
    with (
        GatewayProcess(
            [*endpoints(fleet), "--keep-alive-timeout", "1"], tmp_path / "short.log"
        ) as gw,
        socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock,
    ):
        assert _exchange(sock).startswith(b"HTTP/1.1 200")
        time.sleep(3)
        assert _exchange(sock) == b""  # closed by the gateway after 1 s idle
