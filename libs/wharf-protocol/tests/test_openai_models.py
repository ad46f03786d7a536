"""OpenAI wire models: real-looking OpenAI/vLLM payloads read and written back unchanged,
engines' own fields kept, content parts and tools typed, errors in both forms, SSE framing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from wharf_protocol.openai import (
    DONE,
    DONE_EVENT,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ImageURLPart,
    InputAudioPart,
    KVTransferParams,
    ModelList,
    NamedToolChoice,
    OtherPart,
    SSEDecoder,
    TextPart,
    Usage,
    decode_body,
    encode_event,
    error_body,
    iter_events,
    parse_data,
    parse_error,
    prefill_body,
)

FIXTURES = Path(__file__).parent / "fixtures" / "openai"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


ROUND_TRIPS: list[tuple[str, type[BaseModel]]] = [
    ("chat-request-vllm.json", ChatCompletionRequest),
    ("chat-response-vllm.json", ChatCompletionResponse),
    ("chat-response-prefill.json", ChatCompletionResponse),
    ("chat-tool-call-response.json", ChatCompletionResponse),
    ("completion-request-vllm.json", CompletionRequest),
    ("completion-response-vllm.json", CompletionResponse),
    ("models-vllm.json", ModelList),
]


@pytest.mark.parametrize(("name", "model"), ROUND_TRIPS, ids=[n for n, _ in ROUND_TRIPS])
def test_payload_round_trips_unchanged(name: str, model: type[BaseModel]) -> None:
    payload = load(name)
    parsed = model.model_validate(payload)
    assert parsed.wire() == payload  # type: ignore[attr-defined]
    assert json.loads(parsed.wire_json()) == payload  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["chat-stream-vllm.json", "completion-stream-vllm.json"])
def test_stream_chunks_round_trip_unchanged(name: str) -> None:
    model = ChatCompletionChunk if name.startswith("chat") else CompletionChunk
    for chunk in load(name):
        assert model.model_validate(chunk).wire() == chunk


def test_embeddings_round_trip_unchanged() -> None:
    doc = load("embeddings-vllm.json")
    request = EmbeddingRequest.model_validate(doc["request"])
    assert request.wire() == doc["request"]
    assert request.extra_fields == {"truncate_prompt_tokens": 256}
    response = EmbeddingResponse.model_validate(doc["response"])
    assert response.wire() == doc["response"]
    assert response.data[1].embedding == [0.5, 0.125, -0.0625]


def test_engine_fields_are_kept_at_every_level() -> None:
    request = ChatCompletionRequest.model_validate(load("chat-request-vllm.json"))
    assert request.extra_fields == {
        "top_k": 20,
        "min_p": 0.05,
        "repetition_penalty": 1.05,
        "chat_template_kwargs": {"enable_thinking": False},
        "priority": 3,
    }
    assert request.kv_transfer_params is not None
    assert request.kv_transfer_params.extra_fields == {"tp_size": 1}
    assert request.stream_options is not None
    assert request.stream_options.include_usage is True
    response = ChatCompletionResponse.model_validate(load("chat-response-vllm.json"))
    assert response.choices[0].extra_fields == {"stop_reason": None}
    assert response.choices[0].message.extra_fields["reasoning_content"] is None
    assert response.extra_fields["prompt_logprobs"] is None


def test_content_parts_and_tools_are_typed() -> None:
    request = ChatCompletionRequest.model_validate(load("chat-request-vllm.json"))
    system, user, assistant, tool = request.messages
    assert system.text() == "You are a terse assistant."
    assert isinstance(user.content, list)
    text, image, video, audio = user.content
    assert isinstance(text, TextPart)
    assert isinstance(image, ImageURLPart)
    assert image.image_url.detail == "low"
    assert isinstance(video, OtherPart)
    assert video.type == "video_url"
    assert video.extra_fields == {"video_url": {"url": "file:///data/clip.mp4"}}
    assert isinstance(audio, InputAudioPart)
    assert user.text() == "What is in this picture, and what is the weather there?"
    assert assistant.content is None
    assert assistant.tool_calls is not None
    assert assistant.tool_calls[0].function.name == "get_weather"
    assert tool.tool_call_id == "chatcmpl-tool-1"
    assert request.tools is not None
    assert request.tools[0].function.parameters == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assert isinstance(request.tool_choice, NamedToolChoice)
    for choice in ("auto", "none", "required"):
        body = {"messages": [{"role": "user", "content": "hi"}], "tool_choice": choice}
        assert ChatCompletionRequest.model_validate(body).tool_choice == choice


def test_malformed_requests_are_refused() -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "m"})  # no messages
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"messages": [{"content": "no role"}]})
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate(
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]}  # text part, no text
        )
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"prompt": {"not": "a prompt"}})


def test_fields_not_given_stay_absent() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert ChatCompletionRequest.model_validate(body).wire() == body


def test_built_responses_carry_the_fields_clients_require() -> None:
    response = ChatCompletionResponse.model_validate(
        {"id": "c1", "model": "m", "choices": [{"message": {"content": "hi"}}]}
    )
    out = response.wire()
    assert out["object"] == "chat.completion"
    assert isinstance(out["created"], int)
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi"},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    last = ChatCompletionChunk.usage_only(
        "c1", "m", Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5), created=7
    )
    assert last.wire() == {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    assert CompletionChunk.usage_only("c2", "m", Usage(), created=1).wire()["object"] == (
        "text_completion"
    )


def test_prefill_hand_off_params() -> None:
    prefill = KVTransferParams.for_prefill().wire()
    assert prefill == {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    }
    answer = ChatCompletionResponse.model_validate(load("chat-response-prefill.json"))
    params = answer.kv_transfer_params
    assert params is not None
    assert params.remote_block_ids == [4, 5, 6, 7, 8, 9, 10]
    decode = CompletionRequest(prompt="x", kv_transfer_params=params).wire()
    assert decode["kv_transfer_params"] == load("chat-response-prefill.json")["kv_transfer_params"]


# --- errors -----------------------------------------------------------------------------------


def test_error_body_is_vllms_nested_form() -> None:
    assert error_body("The model `x` does not exist.", 404, param="model") == {
        "error": {
            "message": "The model `x` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    assert error_body("bad", 400)["error"]["type"] == "BadRequestError"
    assert error_body("conflict", 409)["error"]["type"] == "ConflictError"


def test_parse_error_reads_every_form() -> None:
    openai_form = {
        "error": {
            "message": "Invalid value for 'temperature'",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        }
    }
    info = parse_error(openai_form)
    assert info is not None
    assert (info.message, info.param, info.code) == (
        "Invalid value for 'temperature'",
        "temperature",
        "invalid_value",
    )
    flat = {"object": "error", "message": "too long", "type": "BadRequestError", "code": 400}
    info = parse_error(flat)
    assert info is not None
    assert (info.message, info.type, info.code) == ("too long", "BadRequestError", 400)
    info = parse_error({"error": "Model with name m does not exist."})
    assert info is not None
    assert info.message == "Model with name m does not exist."
    assert parse_error({"id": "chatcmpl-1"}) is None
    assert parse_error([1, 2]) is None


# --- SSE --------------------------------------------------------------------------------------


def _stream_bytes(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_event(ChatCompletionChunk.model_validate(c)) for c in chunks) + (
        DONE_EVENT
    )


def test_sse_framing_is_openais() -> None:
    chunk = ChatCompletionChunk.model_validate(load("chat-stream-vllm.json")[1])
    event = encode_event(chunk)
    assert event.startswith(b"data: {")
    assert event.endswith(b"}\n\n")
    assert event.count(b"\n") == 2
    assert DONE_EVENT == b"data: [DONE]\n\n"
    assert encode_event({"a": 1}) == b'data: {"a":1}\n\n'
    assert encode_event("two\nlines") == b"data: two\ndata: lines\n\n"


def test_sse_decoder_reassembles_events_split_anywhere() -> None:
    chunks = load("chat-stream-vllm.json")
    raw = _stream_bytes(chunks)
    expected = [json.dumps(c) for c in chunks]
    for size in (1, 2, 3, 7, 64, len(raw)):
        pieces = [raw[i : i + size] for i in range(0, len(raw), size)]
        events = list(iter_events(pieces))
        assert events[-1] == DONE
        assert [json.loads(e) for e in events[:-1]] == [json.loads(e) for e in expected]
    parsed = [parse_data(e, ChatCompletionChunk) for e in iter_events([raw])]
    assert parsed[-1] is None
    text = "".join(c.choices[0].delta.content or "" for c in parsed if c is not None and c.choices)
    assert text == "Hello"
    last = parsed[-2]
    assert last is not None
    assert last.usage is not None
    assert last.usage.completion_tokens == 3


def test_sse_decoder_line_endings_comments_and_fields() -> None:
    raw = (
        b": keep-alive\r\n\r\n"
        b'event: message\r\nid: 1\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        b'data:{"b":2}\r\r'
        b"retry: 10\n\n"
        b"data: [DONE]"
    )
    decoder = SSEDecoder()
    events: list[str] = []
    for byte in raw:  # one byte at a time: a CR at the end of a piece must wait for its LF
        events += decoder.feed(bytes([byte]))
    assert events == ['{"a":\n1}', '{"b":2}']
    assert decoder.close() == [DONE]


# --- prefill/decode hand-off ------------------------------------------------------------------


def test_prefill_and_decode_bodies() -> None:
    request = load("chat-request-vllm.json")
    request.pop("kv_transfer_params")
    original = json.loads(json.dumps(request))
    prefill = prefill_body(request)
    assert request == original  # the client's request is not touched
    assert prefill["stream"] is False
    assert "stream_options" not in prefill
    assert prefill["max_tokens"] == 1
    assert prefill["max_completion_tokens"] == 1
    assert prefill["kv_transfer_params"] == KVTransferParams.for_prefill().wire()
    assert prefill["top_k"] == 20  # engine fields go along
    assert ChatCompletionRequest.model_validate(prefill).messages == (
        ChatCompletionRequest.model_validate(request).messages
    )
    answer = ChatCompletionResponse.model_validate(load("chat-response-prefill.json"))
    decode = decode_body(request, answer.kv_transfer_params)
    assert decode == {**request, "kv_transfer_params": answer.wire()["kv_transfer_params"]}
    assert decode_body(prefill, None) == {
        k: v for k, v in prefill.items() if k != "kv_transfer_params"
    }
    completion = prefill_body({"model": "m", "prompt": "hi", "stream": True})
    assert completion == {
        "model": "m",
        "prompt": "hi",
        "stream": False,
        "max_tokens": 1,
        "kv_transfer_params": KVTransferParams.for_prefill().wire(),
    }
