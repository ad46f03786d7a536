"""`--workers`: Wharf's model server with 1 and with 2 worker processes, unpinned.

Serves the iris model of `model_server.py` with `wharf-model-server --workers N` for each N in
`--workers` (default 1,2) and drives each with `wrk` (one thread, C keep-alive connections, V2
REST by default) with nothing pinned: servers and load generator share every core of the machine,
as the issue asks ("2 workers against 1 with the load tool on the same 2 cores"). The servers are
measured one after another in each round, the order alternating; each figure is the median over
rounds. Server CPU is that of the whole process tree (parent and workers).

Run: `uv run python bench/workers.py [--duration S] [--rounds N] [--concurrency C] [--api v1|v2]`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import model_server as ms
from tooling import ensure_wrk, free_port, markdown_table


def wait_all_workers(server: ms.Server, workers: int, timeout: float = 300) -> None:
    """Until every worker has served a request (new connections land on any of them)."""
    if workers < 2:
        return
    pattern = re.compile(r'^wharf_worker_inference_count\{pid="(\d+)"\}', re.MULTILINE)
    path = ms.api_path("v1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ms.http(f"{server.base_url}{path}", ms.v1_body())
        _, text = ms.http(f"{server.base_url}/metrics")
        if len(set(pattern.findall(text.decode()))) >= workers:
            return
        time.sleep(0.05)
    raise SystemExit(f"{server.name}: not every worker answered within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per cell")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--api", choices=["v1", "v2"], default="v2")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    wharf_bin = Path(sys.executable).parent / "wharf-model-server"
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="wharf-bench-workers-"))
    load_at_start = os.getloadavg()
    try:
        model_dir = workdir / "model"
        expected = ms.build_model(model_dir)
        bodies = ms.write_bodies(workdir)
        generator = ms.Generator(wrk, Path("ghz"), [], bodies, core=None)
        api = ms.Api(args.api, f"{args.api.upper()} REST", args.concurrency)
        servers = []
        for n in counts:
            http_port, grpc_port = free_port(), free_port()
            cmd = [str(wharf_bin), "--model_name", ms.MODEL_NAME, "--model_dir", str(model_dir)]
            cmd += ["--http_port", str(http_port), "--grpc_port", str(grpc_port)]
            cmd += ["--workers", str(n)]
            name = f"wharf --workers {n}"
            log = workdir / f"workers-{n}.log"
            servers.append(ms.Server(name, cmd, http_port, grpc_port, log, core=None))
        cells: dict[str, list[ms.Cell]] = {s.name: [] for s in servers}
        with ms.running(servers):
            for n, s in zip(counts, servers, strict=True):
                wait_all_workers(s, n)
                problems = ms.check_answers(s, expected)
                if problems:
                    raise SystemExit(f"{s.name} answered wrongly: {problems}")
            for round_no in range(1, args.rounds + 1):
                order = servers if round_no % 2 else list(reversed(servers))
                for s in order:
                    ms.measure_or_record(generator, s, api, args.warmup, round_no)
                    cell = ms.measure_or_record(generator, s, api, args.duration, round_no)
                    cells[s.name].append(cell)
                    print(
                        f"  round {round_no} {s.name}: {cell.rps:8.0f} req/s  p50 "
                        f"{cell.p50_ms:6.2f} ms  p99 {cell.p99_ms:7.2f} ms  server CPU "
                        f"{ms.fmt(cell.server_cpu_us_per_req, '.0f')} us/req",
                        flush=True,
                    )
        base = statistics.median(c.rps for c in cells[servers[0].name])
        rows = []
        for s in servers:
            group = cells[s.name]
            rps = statistics.median(c.rps for c in group)
            cpu = [c.server_cpu_us_per_req for c in group if c.server_cpu_us_per_req is not None]
            rows.append(
                [
                    s.name,
                    f"{rps:.0f}",
                    f"{statistics.median(c.p50_ms for c in group):.2f}",
                    f"{statistics.median(c.p99_ms for c in group):.2f}",
                    f"{statistics.median(cpu):.0f}" if cpu else "-",
                    f"{rps / base:.2f}x",
                    ", ".join(f"{c.rps:.0f}" for c in group),
                ]
            )
        head = ["server", "req/s", "p50 ms", "p99 ms", "server CPU us/req", "vs first", "rounds"]
        print()
        print(f"{api.label} c={args.concurrency}, unpinned, {os.cpu_count()} cpus")
        print(markdown_table(head, rows))
        print(
            "load average (1, 5, 15 min) at start "
            + " ".join(f"{x:.1f}" for x in load_at_start)
            + ", at end "
            + " ".join(f"{x:.1f}" for x in os.getloadavg())
        )
        return 1 if any(c.errors for group in cells.values() for c in group) else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
