"""CPU per V2 REST inference request of Wharf's ASGI app and of the model floor, in process.

No sockets, no HTTP parser, no load generator: each app is called directly with the ASGI
scope uvicorn + httptools would build for `wrk`'s request (`POST /v2/models/iris/infer`, a 2x4
FP32 JSON tensor, as in `model_server.py`), a `receive` that hands over the whole body and a
`send` that checks the answers. Each request runs in a task of its own, as uvicorn runs it;
`--concurrency` requests are in flight at once (that many coroutines under `asyncio.gather`,
each sending its requests one after another, like keep-alive connections) on a uvloop event
loop, with one model thread (the benchmark pins the server to one core).

Both apps serve the same joblib-saved iris LogisticRegression: Wharf's as the server builds it
(the sklearn runtime, the data plane, `build_rest_app`), the floor's with
`model_floor_server.make_app`. The rounds alternate the two apps; each reports the process
CPU time (`time.process_time`) per request. What this measures is the apps' own work, so it
is steady on a busy machine; what uvicorn, the kernel and the client add is the same for both
and not counted.

Run: `uv run python bench/inproc_v2.py [--requests N] [--concurrency K] [--rounds R]`;
`--only wharf` (or `floor`) with `--profile FILE` writes a cProfile of one app's timed
requests as well.

Instructions per request instead of CPU time (deterministic, whatever else the machine runs):
`valgrind --tool=callgrind --instr-atstart=no --dump-instr=no --callgrind-out-file=OUT
.venv/bin/python bench/inproc_v2.py --callgrind OUT --requests 320 --rounds 1`. Only the timed
requests are counted (`callgrind_control` switches the counting on and dumps it per app and
round). Under valgrind everything runs about 50 times slower, so Wharf's inline limit and turn
budget (`wharf_model_server.inline`) are raised by as much: with the defaults, predict would
look long and move to the thread pool.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped, unused-ignore]
import orjson
import uvloop

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from model_floor_server import make_app  # noqa: E402

from wharf_model_server import executor, inline  # noqa: E402
from wharf_model_server.dataplane import DataPlane  # noqa: E402
from wharf_model_server.model_repository import ModelRepository  # noqa: E402
from wharf_model_server.rest.app import build_rest_app  # noqa: E402
from wharf_model_server.runtimes.factory import load_model_dir  # noqa: E402

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MODEL_NAME = "iris"
PATH = f"/v2/models/{MODEL_NAME}/infer"
INSTANCES = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
BODY = orjson.dumps(
    {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 4],
                "datatype": "FP32",
                "data": [x for row in INSTANCES for x in row],
            }
        ]
    }
)


def build_model(model_dir: Path) -> None:
    from sklearn.datasets import load_iris  # type: ignore[import-untyped, unused-ignore]
    from sklearn.linear_model import (  # type: ignore[import-untyped, unused-ignore]
        LogisticRegression,
    )

    iris = load_iris()
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    joblib.dump(model, model_dir / "model.joblib")


# How much slower code runs under valgrind, roughly: the inline limits are raised by as much.
VALGRIND_SLOWDOWN = 50


def wharf_app(model_dir: Path, slowdown: float = 1) -> App:
    executor.configure(1)
    model = load_model_dir(MODEL_NAME, str(model_dir))
    if slowdown != 1:
        model.inline_limit_s = inline.INLINE_LIMIT_S * slowdown
        inline._turns.turn = inline.LoopTurn(budget_s=inline.TURN_BUDGET_S * slowdown)
    repository = ModelRepository(str(model_dir))
    repository.update(model)
    model.start()
    app, _fastapi = build_rest_app(DataPlane(repository))
    return app


def floor_app(model_dir: Path) -> App:
    return make_app(joblib.load(model_dir / "model.joblib"))


def scope() -> Scope:
    """What uvicorn's httptools protocol hands the app for wrk's POST (fresh per request)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "root_path": "",
        "method": "POST",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "state": {},
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": BODY, "more_body": False}


class Checker:
    """A `send` that checks each answer: 200 and a body with the model's two labels."""

    def __init__(self) -> None:
        self.status = 0
        self.bodies = 0

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            if self.status != 200:
                raise RuntimeError(f"status {self.status}: {message['body']!r}")
            self.bodies += 1


async def _connection(app: App, requests: int, checker: Checker) -> None:
    for _ in range(requests):
        # uvicorn runs each request in a task of its own, which starts on the loop's next turn
        await asyncio.ensure_future(app(scope(), _receive, checker.send))


class Callgrind:
    """Counts instructions of the code between :meth:`start` and :meth:`stop` (the process
    runs under callgrind with ``--instr-atstart=no`` and ``--callgrind-out-file=out``)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.pid = str(os.getpid())
        self.dumps = 0

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, self.pid], check=True, capture_output=True)

    def start(self) -> None:
        self._control("--instr=on")
        self._control("--zero")

    def stop(self) -> int:
        self._control("--dump")
        self._control("--instr=off")
        self.dumps += 1
        text = Path(f"{self.out}.{self.dumps}").read_text(errors="replace")
        found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
        if found is None:
            raise RuntimeError(f"no totals in {self.out}.{self.dumps}")
        return int(found.group(1))


async def drive(
    app: App, requests: int, concurrency: int, callgrind: Callgrind | None = None
) -> float:
    """Sends ``requests`` through ``app``, ``concurrency`` at a time; CPU seconds (or, with
    ``callgrind``, instructions) per request."""
    checker = Checker()
    per_connection = max(1, requests // concurrency)
    if callgrind is not None:
        callgrind.start()
    start = time.process_time()
    await asyncio.gather(*(_connection(app, per_connection, checker) for _ in range(concurrency)))
    cost = time.process_time() - start
    if callgrind is not None:
        cost = callgrind.stop()
    if checker.bodies != per_connection * concurrency:
        raise RuntimeError(f"{checker.bodies} answers for {per_connection * concurrency}")
    return cost / checker.bodies


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000, help="per app per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1000, help="requests per app first")
    parser.add_argument("--only", choices=("wharf", "floor"))
    parser.add_argument("--profile", type=Path, help="cProfile of the timed requests")
    parser.add_argument(
        "--callgrind", type=Path, metavar="OUT", help="count instructions (under callgrind)"
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, model_dir: Path) -> dict[str, list[float]]:
    slowdown = 1 if args.callgrind is None else VALGRIND_SLOWDOWN
    apps = {"wharf": wharf_app(model_dir, slowdown), "floor": floor_app(model_dir)}
    if args.only:
        apps = {args.only: apps[args.only]}
    for app in apps.values():
        await drive(app, args.warmup, args.concurrency)
    gc.collect()
    gc.freeze()  # as the server does once started
    results: dict[str, list[float]] = {name: [] for name in apps}
    profiler = cProfile.Profile() if args.profile else None
    callgrind = None if args.callgrind is None else Callgrind(args.callgrind)
    unit, scale = ("instructions", 1.0) if callgrind else ("us", 1e6)
    for round_no in range(args.rounds):
        names = list(apps) if round_no % 2 == 0 else list(reversed(apps))
        for name in names:
            if profiler is not None:
                profiler.enable()
            cost = scale * await drive(apps[name], args.requests, args.concurrency, callgrind)
            if profiler is not None:
                profiler.disable()
            results[name].append(cost)
            print(f"round {round_no + 1} {name:5s} {cost:9.1f} {unit}/request", flush=True)
    if profiler is not None:
        profiler.dump_stats(args.profile)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        build_model(model_dir)
        results = uvloop.run(run(args, model_dir))
    unit = "us" if args.callgrind is None else "instructions"
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, median in medians.items():
        low, high = min(results[name]), max(results[name])
        print(f"{name:5s} median {median:9.1f} {unit}/request (min {low:.1f}, max {high:.1f})")
    if len(medians) == 2:
        wharf, floor = medians["wharf"], medians["floor"]
        print(
            f"wharf - floor {wharf - floor:.1f} {unit}/request, wharf / floor {wharf / floor:.3f}"
        )


if __name__ == "__main__":
    main()
