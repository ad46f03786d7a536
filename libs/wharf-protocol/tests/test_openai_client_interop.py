"""The official `openai` client reads what these models write: responses, streamed chunks with
usage, embeddings, the models list and errors, served to it through an in-memory transport (no
socket), and the requests it sends parse into the request models with its extra fields kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from wharf_protocol.openai import (
    DONE_EVENT,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelList,
    encode_event,
    error_body,
)

FIXTURES = Path(__file__).parent / "fixtures" / "openai"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeEngine:
    """Answers like vLLM, from the fixtures, and records the parsed requests."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(
                200, content=ModelList.model_validate(load("models-vllm.json")).wire_json()
            )
        body = json.loads(request.content)
        if body.get("model") == "missing":
            return httpx.Response(404, json=error_body("The model `missing` does not exist.", 404))
        if path == "/v1/chat/completions":
            chat = ChatCompletionRequest.model_validate(body)
            self.requests.append(chat)
            if chat.stream:
                return self._stream(ChatCompletionChunk, "chat-stream-vllm.json")
            fixture = "chat-tool-call-response.json" if chat.tools else "chat-response-vllm.json"
            response = ChatCompletionResponse.model_validate(load(fixture))
            return httpx.Response(200, content=response.wire_json())
        if path == "/v1/completions":
            completion = CompletionRequest.model_validate(body)
            self.requests.append(completion)
            if completion.stream:
                return self._stream(CompletionChunk, "completion-stream-vllm.json")
            answer = CompletionResponse.model_validate(load("completion-response-vllm.json"))
            return httpx.Response(200, content=answer.wire_json())
        if path == "/v1/embeddings":
            self.requests.append(EmbeddingRequest.model_validate(body))
            doc = load("embeddings-vllm.json")["response"]
            return httpx.Response(200, content=EmbeddingResponse.model_validate(doc).wire_json())
        return httpx.Response(404, json=error_body(f"no route {path}", 404))

    @staticmethod
    def _stream(model: type[ChatCompletionChunk | CompletionChunk], fixture: str) -> httpx.Response:
        events = [encode_event(model.model_validate(c)) for c in load(fixture)]
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=b"".join(events) + DONE_EVENT,
        )


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(engine: FakeEngine) -> openai.OpenAI:
    http = httpx.Client(transport=httpx.MockTransport(engine))
    return openai.OpenAI(
        base_url="http://engine.test/v1", api_key="unused", http_client=http, max_retries=0
    )


def test_chat_completion(client: openai.OpenAI, engine: FakeEngine) -> None:
    answer = client.chat.completions.create(
        model="Qwen/Qwen2.5-1.5B-Instruct",
        messages=[{"role": "user", "content": [{"type": "text", "text": "weather?"}]}],
        max_completion_tokens=16,
        extra_body={"top_k": 5, "chat_template_kwargs": {"enable_thinking": False}},
    )
    assert answer.choices[0].message.content == "It is raining in Paris."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 32
    assert answer.choices[0].logprobs is not None
    assert answer.choices[0].logprobs.content is not None
    assert answer.choices[0].logprobs.content[0].token == "It"
    (sent,) = engine.requests
    assert sent.max_completion_tokens == 16
    assert sent.extra_fields == {"top_k": 5, "chat_template_kwargs": {"enable_thinking": False}}


def test_chat_tool_call(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
        tool_choice="auto",
    )
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert answer.choices[0].finish_reason == "tool_calls"


def test_streamed_chat_with_usage(client: openai.OpenAI, engine: FakeEngine) -> None:
    stream = client.chat.completions.create(
        model="llama",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello"
    tool_deltas = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert [t.function.name for t in tool_deltas if t.function] == ["get_weather", None]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 12
    (sent,) = engine.requests
    assert sent.stream_options is not None
    assert sent.stream_options.include_usage is True


def test_completions_plain_and_streamed(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="facebook/opt-125m", prompt="San Francisco is a")
    assert [c.text for c in answer.choices] == [" city in California", " Paris."]
    assert answer.choices[0].logprobs is not None
    assert answer.choices[0].logprobs.tokens == [" city", " in", " California"]
    stream = client.completions.create(
        model="facebook/opt-125m",
        prompt="San Francisco is a",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " city in"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2


def test_embeddings_and_models(client: openai.OpenAI, engine: FakeEngine) -> None:
    result = client.embeddings.create(
        model="BAAI/bge-small-en-v1.5", input=["hello", "world"], encoding_format="float"
    )
    assert [e.embedding for e in result.data] == [[0.0123, -0.5, 0.25], [0.5, 0.125, -0.0625]]
    assert result.usage.prompt_tokens == 4
    (sent,) = engine.requests
    assert sent.input == ["hello", "world"]
    models = client.models.list()
    assert [m.id for m in models.data] == ["Qwen/Qwen2.5-1.5B-Instruct", "sql-lora"]
    assert models.data[0].owned_by == "vllm"


def test_errors_become_the_clients_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404
    assert "The model `missing` does not exist." in caught.value.message
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "NotFoundError"
