"""``kserve.logging`` counterpart: examples call ``logging.configure_logging(args.log_config_file)``."""

from __future__ import annotations

import json
import logging
import logging.config
import os

logger = logging.getLogger("wharf")
trace_logger = logging.getLogger("wharf.trace")


def configure_logging(log_config: str | dict[str, object] | None = None) -> None:
    """Applies a dictConfig (a dict, or a .json/.yaml file), else a plain format at
    ``KSERVE_LOGLEVEL`` (default INFO)."""
    if isinstance(log_config, dict):
        logging.config.dictConfig(log_config)
        return
    if log_config:
        with open(log_config) as fh:
            if log_config.endswith((".yaml", ".yml")):
                import yaml

                config = yaml.safe_load(fh)
            else:
                config = json.load(fh)
        logging.config.dictConfig(config)
        return
    logging.basicConfig(
        level=os.environ.get("KSERVE_LOGLEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
