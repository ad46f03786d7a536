import pytest

from wharf_protocol.limits import (
    DEFAULT_HEAD_TIMEOUT_S,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MIN_BODY_RATE,
    HEAD_TIMEOUT_ENV,
    MAX_MESSAGE_BYTES_ENV,
    MIN_BODY_RATE_ENV,
    grpc_size_options,
    head_timeout_s,
    max_message_bytes,
    min_body_rate,
)


def test_default_when_unset_or_blank() -> None:
    assert max_message_bytes({}) == DEFAULT_MAX_MESSAGE_BYTES
    assert max_message_bytes({MAX_MESSAGE_BYTES_ENV: " "}) == DEFAULT_MAX_MESSAGE_BYTES


def test_environment_overrides() -> None:
    assert max_message_bytes({MAX_MESSAGE_BYTES_ENV: "1024"}) == 1024


@pytest.mark.parametrize("raw", ["abc", "0", "-5"])
def test_bad_values_name_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match=MAX_MESSAGE_BYTES_ENV):
        max_message_bytes({MAX_MESSAGE_BYTES_ENV: raw})


def test_grpc_options_cover_both_directions() -> None:
    assert dict(grpc_size_options(7)) == {
        "grpc.max_send_message_length": 7,
        "grpc.max_receive_message_length": 7,
    }


def test_head_timeout_from_the_environment() -> None:
    assert head_timeout_s({}) == DEFAULT_HEAD_TIMEOUT_S == 30.0
    assert head_timeout_s({HEAD_TIMEOUT_ENV: " 2.5 "}) == 2.5
    for bad in ("soon", "0", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match=HEAD_TIMEOUT_ENV):
            head_timeout_s({HEAD_TIMEOUT_ENV: bad})


def test_min_body_rate_from_the_environment() -> None:
    assert min_body_rate({}) == DEFAULT_MIN_BODY_RATE == 1024
    assert min_body_rate({MIN_BODY_RATE_ENV: " 4096 "}) == 4096
    for bad in ("fast", "0", "-1", "1.5"):
        with pytest.raises(ValueError, match=MIN_BODY_RATE_ENV):
            min_body_rate({MIN_BODY_RATE_ENV: bad})
