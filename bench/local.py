"""Local runtime figures: `wharf up` to first prediction, scale-from-zero, ingress overhead.

    uv run python examples/models/make_iris.py
    uv run python bench/local.py [--requests 2000]

Method:
- up -> first prediction: wall time from running `wharf up -f` (no daemon, fresh WHARF_HOME)
  until the first 200 from the ingress, then again for a second service with the same model
  URI on the running daemon (model already in the cache);
- cold start: a `minReplicas: 0` service is left idle until it has no process, then one request
  is timed through the ingress (the activator holds it while a replica starts);
- ingress overhead: the same V1 predict request, sequentially over one keep-alive connection,
  straight to a replica's port and through the ingress, alternating in blocks of 100; the
  figure is the difference of the medians (and of the 90th percentiles). On a busy machine
  the wall-clock difference is mostly waiting for a core, so the daemon's CPU time per proxied
  request (utime + stime from /proc) is printed too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tooling import free_port, percentile, process_cpu_seconds

REPO = Path(__file__).resolve().parents[1]
WHARF = Path(sys.executable).with_name("wharf")
BODY = json.dumps({"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}).encode()


def manifest(root: Path, name: str, **predictor: Any) -> Path:
    model = REPO / "examples" / "models" / "iris"
    spec = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": model.as_uri()}}
    spec.update(predictor)
    path = root / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": name},
                "spec": {"predictor": spec},
            }
        )
    )
    return path


def post(conn: http.client.HTTPConnection, path: str, host: str | None = None) -> int:
    headers = {"content-type": "application/json"}
    if host:
        headers["host"] = host
    conn.request("POST", path, BODY, headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def first_prediction(port: int, name: str, deadline_s: float = 300) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            if post(conn, f"/v1/models/{name}:predict", f"{name}-default.example.com") == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(name)


def timed(conn: http.client.HTTPConnection, path: str, host: str | None, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        assert post(conn, path, host) == 200
        out.append(time.perf_counter() - t)
    return out


def daemon_cpu(pid: int) -> float:
    seconds = process_cpu_seconds(pid)
    if seconds is None:
        raise SystemExit(f"the wharf daemon (pid {pid}) is gone")
    return seconds


def pct(values: list[float], q: int) -> float:
    """The q-th percentile of latencies in seconds, in milliseconds."""
    return percentile(values, q) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wharf-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "WHARF_HOME": str(root / "home"),
        "WHARF_INGRESS_PORT": str(port),
        "WHARF_INGRESS_GRPC_PORT": str(free_port()),
        "WHARF_AUTOSCALE_WINDOW": "1",
        "WHARF_SCALE_TO_ZERO_AFTER": "2",
    }

    def wharf(*argv: str) -> str:
        return subprocess.run(
            [str(WHARF), *argv], env=env, check=True, capture_output=True, text=True
        ).stdout

    try:
        t0 = time.monotonic()
        subprocess.Popen(
            [str(WHARF), "up", "--no-wait", "-f", str(manifest(root, "cold"))], env=env
        )
        first_prediction(port, "cold")
        cold = time.monotonic() - t0
        t0 = time.monotonic()
        subprocess.Popen(
            [str(WHARF), "up", "--no-wait", "-f", str(manifest(root, "cached"))], env=env
        )
        first_prediction(port, "cached")
        cached = time.monotonic() - t0
        print(
            f"up -> first prediction: cold {cold:.2f} s, daemon running + model cached {cached:.2f} s"
        )

        wharf("up", "-f", str(manifest(root, "zero", minReplicas=0, maxReplicas=1)))
        while True:
            item = json.loads(wharf("get", "zero", "-o", "json"))
            if not any(r["replicas"] for r in item["local"]["revisions"]["predictor"]):
                break
            time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        t0 = time.monotonic()
        assert post(conn, "/v1/models/zero:predict", "zero-default.example.com") == 200
        print(f"cold start of a scaled-to-zero service: {time.monotonic() - t0:.2f} s")

        item = json.loads(wharf("get", "cached", "-o", "json"))
        replica = item["local"]["revisions"]["predictor"][0]["replicas"][0]
        direct = http.client.HTTPConnection("127.0.0.1", replica["httpPort"], timeout=60)
        ingress = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        path, host = "/v1/models/cached:predict", "cached-default.example.com"
        timed(direct, path, None, 200)
        timed(ingress, path, host, 200)
        d: list[float] = []
        i: list[float] = []
        daemon = int((root / "home" / "wharfd.pid").read_text())
        cpu = 0.0
        for _ in range(max(1, args.requests // 100)):
            d += timed(direct, path, None, 100)
            before = daemon_cpu(daemon)
            i += timed(ingress, path, host, 100)
            cpu += daemon_cpu(daemon) - before
        print(
            f"predict p50: direct {pct(d, 50):.3f} ms, via ingress {pct(i, 50):.3f} ms, "
            f"added {pct(i, 50) - pct(d, 50):.3f} ms; "
            f"p90: direct {pct(d, 90):.3f} ms, via ingress {pct(i, 90):.3f} ms, "
            f"added {pct(i, 90) - pct(d, 90):.3f} ms ({len(d)} requests each)"
        )
        print(f"ingress CPU per proxied request: {cpu / len(i) * 1e6:.0f} us")
    finally:
        subprocess.run([str(WHARF), "down"], env=env, check=False, capture_output=True)


if __name__ == "__main__":
    main()
