"""``wharf-model-server``: serve a model directory with a built-in runtime, or many of them."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from wharf_model_server import workers
from wharf_model_server.errors import ModelMissingError
from wharf_model_server.logging import configure_logging
from wharf_model_server.model import Model
from wharf_model_server.model_server import HelpFormatter, ModelServer, parser
from wharf_model_server.predictor_config import PredictorConfig
from wharf_model_server.runtimes.factory import RuntimeModelRepository, load_model_dir
from wharf_model_server.runtimes.huggingface import options as huggingface_options

logger = logging.getLogger("wharf.server")


def _model_format(argv: Sequence[str] | None) -> str | None:
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--model_format", "--model-format", "--framework", dest="model_format")
    value = peek.parse_known_args(argv)[0].model_format
    return str(value) if value else None


def build_arg_parser(huggingface: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wharf-model-server",
        parents=[parser],
        formatter_class=HelpFormatter,
        description="Serve models over KServe's V1 and V2 (Open Inference Protocol) REST and gRPC.",
    )
    p.add_argument(
        "--model_dir", default=None, help="a model directory, or one model per subdirectory"
    )
    p.add_argument(
        "--model_format", "--model-format", "--framework", dest="model_format", default=None,
        help="sklearn, xgboost, lightgbm, onnx, or huggingface / vllm (see --model_format "
        "huggingface --help) (default: decided by the files found)",
    )  # fmt: skip
    p.add_argument("--nthread", default=1, type=int, help="threads per xgboost/lightgbm/onnx call")
    if huggingface:
        huggingface_options.add_arguments(p)
    return p


def serve_huggingface(args: argparse.Namespace, unknown: Sequence[str]) -> None:
    """`--model_format huggingface` (or `vllm`): one model from --model_dir or --model_id."""
    from wharf_model_server.runtimes.huggingface.loader import load_model

    if args.workers > 1:
        sys.exit("wharf-model-server: --workers must be 1 for the huggingface runtime")
    if args.configure_logging:
        configure_logging(args.log_config_file)  # the load says which task and backend
    try:
        model = load_model(args, unknown)
    except ValueError as exc:
        sys.exit(f"wharf-model-server: {exc}")
    ModelServer(args=args).start([model])


def predictor_config(args: argparse.Namespace) -> PredictorConfig:
    return PredictorConfig(
        predictor_host=args.predictor_host,
        predictor_protocol=args.predictor_protocol,
        predictor_use_ssl=args.predictor_use_ssl,
        predictor_request_timeout_seconds=args.predictor_request_timeout_seconds,
        predictor_request_retries=args.predictor_request_retries,
        predictor_health_check=args.enable_predictor_health_check,
    )


def main(argv: Sequence[str] | None = None) -> None:
    huggingface = huggingface_options.wants_huggingface(_model_format(argv))
    args, unknown = build_arg_parser(huggingface).parse_known_args(argv)
    if huggingface:
        # Flags the server does not know go to vLLM (its engine flags), as KServe does.
        serve_huggingface(args, unknown)
        return
    if unknown:
        # ServingRuntime manifests written for other runtimes may pass flags we do not know;
        # KServe's servers ignore those too.
        logging.getLogger("wharf.server").warning("ignoring unknown arguments: %s", unknown)
    if args.workers > 1 and not workers.is_worker():
        # The models are loaded by each worker, never here: nothing is forked from this process.
        if args.configure_logging:
            configure_logging(args.log_config_file)
        command = [
            sys.executable,
            "-m",
            "wharf_model_server",
            *(sys.argv[1:] if argv is None else argv),
        ]
        sys.exit(workers.supervise(command, args.workers, args.graceful_shutdown_timeout))
    if args.model_dir:
        if not os.path.isdir(args.model_dir):
            # KServe's servers stop here too: a server with nothing to serve must not look ready.
            what = "is not a directory" if os.path.exists(args.model_dir) else "does not exist"
            sys.exit(f"wharf-model-server: --model_dir {args.model_dir} {what}")
        try:
            model = load_model_dir(args.model_name, args.model_dir, args.model_format, args.nthread)
        except ValueError as exc:
            sys.exit(f"wharf-model-server: {exc}")
        except ModelMissingError:
            repository = RuntimeModelRepository(args.model_dir, args.model_format, args.nthread)
            repository.load_models()
            ModelServer(args=args, registered_models=repository).start([])
            return
        ModelServer(args=args).start([model])
        return
    if args.predictor_host:
        # A pass-through transformer: forwards every request to its predictor.
        transformer = Model(args.model_name, predictor_config(args))
        transformer.ready = True
        ModelServer(args=args).start([transformer])
        return
    sys.exit("wharf-model-server: pass --model_dir (a model to serve) or --predictor_host")


if __name__ == "__main__":
    main()
