"""What a container with no command runs locally: KServe's model-server images map to Wharf's
model server, which serves the same formats with the same flags. Pure.

On a cluster an image's entrypoint runs; here there is no image, so a runtime written for
KServe (`image: kserve/sklearnserver:latest`, no `command`, as KServe's docs write them) would
have nothing to run. These images are KServe's own servers (predictive, and its
huggingfaceserver); anything else still needs a `command`.

The Hugging Face runtime needs torch, transformers and vLLM, which live in the LLM engine
environment only: `wharf-model-server --model-format=huggingface` started here hands itself to
that environment's python (`wharf-llm-worker engine-python`, docs/huggingface.md), so the
command is the same as on a cluster.
"""

from __future__ import annotations

MODEL_SERVER = "wharf-model-server"

# image repository (its last path part, tag and digest dropped) -> --model-format
KSERVE_IMAGES = {
    "sklearnserver": "sklearn",
    "xgbserver": "xgboost",
    "lgbserver": "lightgbm",
    "huggingfaceserver": "huggingface",
}
WHARF_IMAGES = frozenset({"model-server", "wharf-model-server", "huggingface-server"})


def repository(image: str) -> str:
    """`kserve/sklearnserver:v0.14@sha256:..` -> `sklearnserver`."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def local_command(image: str | None) -> tuple[str, ...] | None:
    """The command standing in for an image's entrypoint, or None when there is none."""
    if not image:
        return None
    repo = repository(image)
    if repo in KSERVE_IMAGES:
        return (MODEL_SERVER, f"--model-format={KSERVE_IMAGES[repo]}")
    if repo in WHARF_IMAGES:
        return (MODEL_SERVER,)
    return None
