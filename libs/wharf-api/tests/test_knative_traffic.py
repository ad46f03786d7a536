"""The Knative Service's traffic split and tags follow KServe's knative reconciler."""

from __future__ import annotations

import pytest

from wharf_api.traffic import (
    TAG_ROUTING_ANNOTATION,
    KnativeTrafficTarget,
    knative_traffic,
    tag_routing,
)


def test_without_a_canary_the_latest_revision_takes_everything() -> None:
    assert knative_traffic(None, "iris-predictor-00001", tags=False) == (
        KnativeTrafficTarget(100, True),
    )


def test_the_first_rollout_ignores_the_canary_percent() -> None:
    # nothing rolled out yet: there is no stable revision to keep the rest
    assert knative_traffic(20, None, tags=True) == (KnativeTrafficTarget(100, True, tag="latest"),)


def test_a_canary_splits_between_latest_and_the_rolled_out_revision() -> None:
    latest, stable = knative_traffic(20, "iris-predictor-00001", tags=False)
    assert latest == KnativeTrafficTarget(20, True)
    assert stable == KnativeTrafficTarget(80, False, "iris-predictor-00001")


def test_tags_name_latest_and_prev() -> None:
    latest, stable = knative_traffic(10, "r1", tags=True)
    assert (latest.tag, stable.tag) == ("latest", "prev")


@pytest.mark.parametrize(("percent", "share"), [(-5, 0), (0, 0), (100, 100), (150, 100)])
def test_the_percent_is_clamped(percent: int, share: int) -> None:
    latest, stable = knative_traffic(percent, "r1", tags=False)
    assert (latest.percent, stable.percent) == (share, 100 - share)


def test_tag_routing_is_the_annotation_true_in_any_case() -> None:
    assert tag_routing({TAG_ROUTING_ANNOTATION: "True"})
    assert not tag_routing({TAG_ROUTING_ANNOTATION: "false"})
    assert not tag_routing({})
