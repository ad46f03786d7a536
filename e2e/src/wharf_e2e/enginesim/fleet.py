"""Simulated pods as a child process, for tests and benchmarks: `SimFleet(n, ...)` starts one
`wharf-engine-sim` process hosting n pods on free ports, waits until every pod answers
`/health`, and stops the process on exit. Also: reading a pod's `/metrics` into numbers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import TracebackType

import httpx

from wharf_e2e.testing import free_port, wait_until

STARTUP_S = 60.0


class SimFleet:
    def __init__(
        self,
        pods: int = 1,
        args: Sequence[str] = (),
        host: str = "127.0.0.1",
        log: Path | None = None,
        ports: Sequence[int] | None = None,
    ) -> None:
        """`ports`: where the pods listen (default: free ports), e.g. a stopped fleet's, to
        start its pods again at the same addresses (as restarted engines)."""
        if pods < 1:
            raise ValueError(f"pods must be >= 1, got {pods}")
        if ports is not None and len(ports) != pods:
            raise ValueError(f"{pods} pods need {pods} ports, got {len(ports)}")
        self.host = host
        self.ports = list(ports) if ports is not None else _distinct_free_ports(pods, host)
        self.args = list(args)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def urls(self) -> list[str]:
        return [f"http://{self.host}:{p}" for p in self.ports]

    def start(self) -> SimFleet:
        argv = [sys.executable, "-m", "wharf_e2e.enginesim.cli", "--host", self.host,
                "--pods", str(len(self.ports)), "--ports", ",".join(map(str, self.ports)),
                *self.args]  # fmt: skip
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        finally:
            if self.log:
                out.close()  # type: ignore[union-attr]
        for url in self.urls:
            wait_until(partial(self._healthy, url), f"simulated pod {url}", STARTUP_S)
        return self

    def _healthy(self, url: str) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"wharf-engine-sim exited with {self.process.returncode}")
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> SimFleet:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _distinct_free_ports(n: int, host: str) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as {sample name with its labels: value}, e.g.
    `vllm:prompt_tokens_total` (labels dropped when `name` alone is unique enough for callers)
    and `vllm:prompt_tokens_by_source_total{source="local_compute"}`; see `metric`."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        values[sample] = float(value)
    return values


def metric(values: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    total, found = 0.0, False
    for sample, value in values.items():
        sample_name, _, rest = sample.partition("{")
        if sample_name != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
            found = True
    if not found:
        raise KeyError(f"no sample {name} with labels {labels}")
    return total


def scrape(url: str, client: httpx.Client | None = None) -> dict[str, float]:
    get = client.get if client is not None else httpx.get
    answer = get(f"{url}/metrics", timeout=10.0)
    answer.raise_for_status()
    return parse_metrics(answer.text)
