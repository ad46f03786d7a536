"""When a Standard-mode component counts as Ready during a rollout: only once the Deployment
has no pod of the old template left, since until then the available replica may be an old one
still serving the previous model. The counts are those the Deployment controller reports in the
steps of a rolling update of one replica (maxSurge 25%, maxUnavailable 25%)."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_controller.status import deployment_ready


def _rolling(replicas: int, updated: int, available: int, *, wanted: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "iris-predictor", "generation": 2},
        "spec": {"replicas": wanted},
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "updatedReplicas": updated,
            "availableReplicas": available,
        },
    }


@pytest.mark.parametrize(
    ("step", "deployment", "ready"),
    [
        # the new ReplicaSet has its pod, not yet available; the old pod still serves
        ("surged", _rolling(replicas=2, updated=1, available=1), False),
        # both available; the old one not yet scaled away
        ("both up", _rolling(replicas=2, updated=1, available=2), False),
        # the old pod is gone (terminating pods are not counted): only the new one serves
        ("done", _rolling(replicas=1, updated=1, available=1), True),
        # a scale-up of the current template does not take Ready away
        ("scaling up", _rolling(replicas=3, updated=3, available=1, wanted=3), True),
    ],
)
def test_ready_only_once_no_old_pod_is_left(
    step: str, deployment: dict[str, Any], ready: bool
) -> None:
    assert deployment_ready(deployment) is ready, step
