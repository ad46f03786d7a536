"""`wharf-controller`: `run` the controller, or `render -f FILE` what it would create."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from wharf_api import NoSupportingRuntimeError, WharfValidationError, load_documents
from wharf_controller.render import RenderError, render_documents

MAX_INPUT_BYTES = 4 * 1024 * 1024


def _render(args: argparse.Namespace) -> int:
    docs = []
    for name in args.filename:
        path = Path(name)
        if path.stat().st_size > MAX_INPUT_BYTES:
            print(f"{path}: larger than {MAX_INPUT_BYTES} bytes", file=sys.stderr)
            return 2
        docs += load_documents(path)
    for name in args.runtimes or []:
        for path in sorted(Path(name).glob("*.yaml")) if Path(name).is_dir() else [Path(name)]:
            docs = [*load_documents(path), *docs]
    try:
        objects = render_documents(docs, mode=args.mode)
    except (RenderError, WharfValidationError, NoSupportingRuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


def _run(args: argparse.Namespace) -> int:
    from wharf_controller.manager import run_forever  # the API client only when running

    return run_forever(args)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="wharf-controller", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="print what the controller would create, as YAML")
    render.add_argument("-f", "--filename", action="append", required=True, help="manifest file")
    render.add_argument(
        "--runtimes",
        action="append",
        help="a file or folder of ServingRuntimes/ClusterServingRuntimes the cluster holds",
    )
    render.add_argument(
        "--mode",
        choices=["Standard", "Knative"],
        help="render as this deployment mode, whatever the manifest or config says",
    )
    render.set_defaults(func=_render)
    run = sub.add_parser("run", help="run the controller against the cluster")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube)")
    run.add_argument("--namespace", default="kserve", help="where the config and the Lease are")
    run.add_argument("--workers", type=int, default=4, help="concurrent reconciles")
    run.add_argument("--resync-seconds", type=float, default=600.0, help="periodic resync")
    run.add_argument("--metrics-port", type=int, default=8080, help="/healthz /readyz /metrics")
    run.add_argument("--metrics-host", default="0.0.0.0", help="address of that port")
    run.add_argument(
        "--leader-elect", action=argparse.BooleanOptionalAction, default=True,
        help="hold the Lease wharf-controller-leader before reconciling",
    )  # fmt: skip
    run.add_argument(
        "--model-cache-namespace",
        help="reconcile LocalModelCaches, with the model agents in this namespace (default: off)",
    )
    run.add_argument("--identity", help="leader-election identity (default: host name + pid)")
    run.add_argument(
        "--lease-seconds",
        type=int,
        default=15,
        help="how long the Lease holds unrenewed (what a crashed leader's successor waits)",
    )
    run.add_argument(
        "--renew-seconds",
        type=float,
        default=2.0,
        help="how often the leader renews the Lease and a candidate retries (< --lease-seconds)",
    )
    run.add_argument(
        "--webhook-cert-dir",
        type=Path,
        help="serve the admission and conversion webhooks over TLS with DIR/tls.crt and "
        "DIR/tls.key (cert-manager's Secret mounted there); without it no webhooks are served",
    )
    run.add_argument("--webhook-port", type=int, default=9443, help="the webhooks' HTTPS port")
    run.add_argument("--webhook-host", default="0.0.0.0", help="address of that port")
    run.set_defaults(func=_run)
    return top


def lease_timing_error(lease_seconds: int, renew_seconds: float) -> str | None:
    """Why these leader-election timings cannot work, or None when they can."""
    if lease_seconds < 1:
        return f"--lease-seconds must be at least 1 (got {lease_seconds})"
    if not renew_seconds > 0:  # `not >` also refuses nan
        return f"--renew-seconds must be more than 0 (got {renew_seconds})"
    if renew_seconds >= lease_seconds:
        # A Lease renewed no more often than it lasts expires between renewals: a second
        # replica would take it while the first still reconciles.
        return (
            f"--renew-seconds ({renew_seconds:g}) must be less than --lease-seconds "
            f"({lease_seconds}), or the Lease expires between renewals"
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    top = parser()
    args = top.parse_args(argv)
    if args.command == "run":
        problem = lease_timing_error(args.lease_seconds, args.renew_seconds)
        if problem is not None:
            top.error(problem)  # usage and the message on stderr, exit status 2
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
