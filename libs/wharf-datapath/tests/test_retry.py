"""When a failed request may go to another replica: pure."""

from __future__ import annotations

from wharf_datapath.retry import MAX_ATTEMPTS, Failure, may_resend


def test_refused_connections_are_resent_for_any_method() -> None:
    for method in ("GET", "POST", "PATCH"):
        assert may_resend(method, Failure.REFUSED, replayable=True, attempt=1)


def test_reset_connections_are_resent_for_any_method() -> None:
    assert may_resend("POST", Failure.RESET, replayable=True, attempt=1)


def test_unanswered_requests_are_resent_only_when_idempotent() -> None:
    assert may_resend("GET", Failure.UNANSWERED, replayable=True, attempt=1)
    assert may_resend("PUT", Failure.UNANSWERED, replayable=True, attempt=1)
    assert not may_resend("POST", Failure.UNANSWERED, replayable=True, attempt=1)


def test_a_body_already_sent_while_streaming_is_never_resent() -> None:
    assert not may_resend("GET", Failure.REFUSED, replayable=False, attempt=1)


def test_attempts_are_bounded() -> None:
    assert may_resend("GET", Failure.REFUSED, replayable=True, attempt=MAX_ATTEMPTS - 1)
    assert not may_resend("GET", Failure.REFUSED, replayable=True, attempt=MAX_ATTEMPTS)
