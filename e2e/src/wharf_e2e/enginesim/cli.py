"""`wharf-engine-sim`: one process serving one simulated vLLM pod, or N pods on N ports
(`--pods N --base-port P`, or `--ports a,b,c`) to save memory and CPU on a small machine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import uuid
from collections.abc import Iterator, Sequence

import uvicorn

from wharf_e2e.enginesim.api import ROLES, Pod, build_app
from wharf_e2e.enginesim.costmodel import CostModel
from wharf_e2e.enginesim.engine import Engine, EngineConfig

MAX_PODS = 256


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the process (several share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def parser() -> argparse.ArgumentParser:
    defaults = CostModel()
    engine = EngineConfig()
    p = argparse.ArgumentParser(
        prog="wharf-engine-sim",
        description="Simulated vLLM pods: vLLM's OpenAI API and /metrics over a cost model.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="the port of a single pod")
    p.add_argument("--pods", type=int, default=1, help="pods in this process (default 1)")
    p.add_argument("--base-port", type=int, help="pod i listens on base-port + i")
    p.add_argument("--ports", help="comma-separated ports, one per pod (instead of --base-port)")
    p.add_argument(
        "--role",
        default="both",
        help="both|prefill|decode, or a comma-separated list with one per pod",
    )
    p.add_argument(
        "--kv-connector",
        choices=("auto", "on", "off"),
        default="auto",
        help="honour kv_transfer_params (auto: on for prefill and decode pods)",
    )
    p.add_argument("--model", default=engine.model, help="served model name")
    p.add_argument("--block-size", type=int, default=engine.block_size)
    p.add_argument("--num-gpu-blocks", type=int, default=engine.num_gpu_blocks)
    p.add_argument("--max-num-seqs", type=int, default=engine.max_num_seqs)
    p.add_argument("--max-num-batched-tokens", type=int, default=engine.max_num_batched_tokens)
    p.add_argument("--max-model-len", type=int, default=engine.max_model_len)
    p.add_argument(
        "--stream-interval",
        type=int,
        default=1,
        help="tokens per streamed chunk after the first (vLLM's --stream-interval)",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="real seconds per simulated second (0.1: ten times faster; 0: no waits)",
    )
    p.add_argument(
        "--handshake-delay",
        type=float,
        default=0.0,
        help="real seconds a decode pod's first KV pull from each prefill engine waits "
        "(vLLM's NIXL handshake; default 0)",
    )
    p.add_argument(
        "--instant",
        action="store_true",
        help="every step costs nothing and nothing waits (router overhead runs)",
    )
    p.add_argument("--step-base-ms", type=float, default=defaults.step_base_s * 1e3)
    p.add_argument("--decode-per-seq-ms", type=float, default=defaults.decode_per_seq_s * 1e3)
    p.add_argument("--prefill-per-token-ms", type=float, default=defaults.prefill_per_token_s * 1e3)
    p.add_argument("--transfer-base-ms", type=float, default=defaults.transfer_base_s * 1e3)
    return p  # fmt: skip


def _ports(args: argparse.Namespace) -> list[int]:
    if args.pods < 1 or args.pods > MAX_PODS:
        raise SystemExit(f"--pods must be between 1 and {MAX_PODS}, got {args.pods}")
    if args.ports:
        try:
            ports = [int(p) for p in args.ports.split(",")]
        except ValueError:
            raise SystemExit(f"--ports must be comma-separated integers: {args.ports!r}") from None
        if args.pods != 1 and len(ports) != args.pods:
            raise SystemExit(f"--ports names {len(ports)} ports for --pods {args.pods}")
    elif args.base_port is not None:
        ports = [args.base_port + i for i in range(args.pods)]
    elif args.pods == 1:
        ports = [args.port]
    else:
        raise SystemExit("--pods N needs --base-port or --ports")
    if any(not 0 < p < 65536 for p in ports) or len(set(ports)) != len(ports):
        raise SystemExit(f"ports must be distinct and in 1..65535: {ports}")
    return ports


def _roles(args: argparse.Namespace, n: int) -> list[str]:
    roles: list[str] = str(args.role).split(",")
    if len(roles) == 1:
        roles *= n
    if len(roles) != n or any(r not in ROLES for r in roles):
        raise SystemExit(f"--role must be one of {ROLES} or one per pod, got {args.role!r}")
    return roles


def pods_from_args(args: argparse.Namespace) -> list[Pod]:
    ports = _ports(args)
    roles = _roles(args, len(ports))
    if args.instant:
        cost, scale = CostModel.instant(), 0.0
    else:
        cost = CostModel(
            step_base_s=args.step_base_ms / 1e3,
            decode_per_seq_s=args.decode_per_seq_ms / 1e3,
            prefill_per_token_s=args.prefill_per_token_ms / 1e3,
            transfer_base_s=args.transfer_base_ms / 1e3,
        )
        scale = args.time_scale
    if args.stream_interval < 1:
        raise SystemExit("--stream-interval must be >= 1")
    if not 0 <= args.handshake_delay <= 3600:
        raise SystemExit("--handshake-delay must be between 0 and 3600 seconds")
    try:
        config = EngineConfig(
            model=args.model,
            block_size=args.block_size,
            num_gpu_blocks=args.num_gpu_blocks,
            max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens,
            max_model_len=args.max_model_len,
            time_scale=scale,
            cost=cost,
        )
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    pods = []
    for port, role in zip(ports, roles, strict=True):
        connector = args.kv_connector == "on" or (args.kv_connector == "auto" and role != "both")
        engine = Engine(config, engine_id=str(uuid.uuid4()))
        pods.append(Pod(engine, role, connector, args.stream_interval, args.host, port,
                        handshake_delay=args.handshake_delay))  # fmt: skip
    return pods


async def serve(pods: Sequence[Pod]) -> None:
    servers = []
    for pod in pods:
        config = uvicorn.Config(build_app(pod), host=pod.host, port=pod.port, log_level="warning",
                                access_log=False, timeout_graceful_shutdown=5)  # fmt: skip
        servers.append(_Server(config))

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            stop()
            break
        await asyncio.sleep(0.05)
    else:
        for pod in pods:
            print(f"enginesim: {pod.role} pod serving {pod.model} on http://{pod.host}:{pod.port}",
                  flush=True)  # fmt: skip
    await asyncio.gather(*tasks, return_exceptions=True)
    if not all(s.started for s in servers):
        raise SystemExit("enginesim: a pod could not start (port in use?)")


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    pods = pods_from_args(args)
    try:
        import uvloop

        uvloop.run(serve(pods))
    except ImportError:
        asyncio.run(serve(pods))


if __name__ == "__main__":
    main()
