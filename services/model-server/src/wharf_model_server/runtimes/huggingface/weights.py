"""Loading a transformers model onto its device: asks torch what hardware there is, lets
`options.choose_placement` decide, and loads the weights there in the chosen dtype."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

from wharf_model_server.runtimes.huggingface import options as opts

logger = logging.getLogger("wharf.huggingface")


def detect_placement(model_cls: Any, source: str, trust_remote_code: bool) -> opts.Placement:
    """The placement for `model_cls` on this machine's hardware."""
    import torch

    cuda = torch.cuda.is_available()
    gpus = torch.cuda.device_count() if cuda else 0
    accelerate = importlib.util.find_spec("accelerate") is not None
    splittable = False
    if cuda and gpus > 1 and accelerate:
        splittable = _splittable(model_cls, source, trust_remote_code)
    return opts.choose_placement(cuda, gpus, accelerate, splittable)


def _splittable(model_cls: Any, source: str, trust_remote_code: bool) -> bool:
    """Whether the model's class names `_no_split_modules` (what `device_map="auto"` needs),
    read from a copy built without weights, as KServe checks it."""
    import transformers

    accelerate: Any = importlib.import_module("accelerate")  # optional, and untyped
    config = transformers.AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    with accelerate.init_empty_weights():
        empty = model_cls.from_config(config, trust_remote_code=trust_remote_code)
    return bool(getattr(empty, "_no_split_modules", None))


def load_weights(
    model_cls: Any,
    source: str,
    *,
    dtype: str,
    placement: opts.Placement,
    revision: str | None,
    trust_remote_code: bool,
) -> Any:
    """`model_cls.from_pretrained` in `dtype` on `placement`, in evaluation mode."""
    import torch

    extra: dict[str, Any] = {}
    if placement.device_map is not None:
        extra["device_map"] = placement.device_map
    model = model_cls.from_pretrained(
        source,
        revision=revision,
        dtype=getattr(torch, dtype),
        trust_remote_code=trust_remote_code,
        **extra,
    )
    if placement.device_map is None and placement.device != "cpu":
        model.to(placement.device)
    model.eval()
    logger.info(
        "weights in %s on %s (device_map %s)", dtype, model.device, placement.device_map or "none"
    )
    return model
