"""`/openai/v1/...` on the model server, for any model implementing the OpenAI interfaces (a
custom model here, as users write them; the Hugging Face runtime's own models are tested in
test_huggingface_runtime.py). The real `openai` client talks to a real server on loopback."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

sys.path.insert(0, str(Path(__file__).parent))

from ms_testkit import ThreadServer

from wharf_model_server.model import BaseKServeModel
from wharf_model_server.openai_model import OpenAIEncoderModel, OpenAIGenerativeModel
from wharf_protocol.errors import InvalidInput
from wharf_protocol.openai import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    Delta,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    ResponseMessage,
    Usage,
)


class Shouter(BaseKServeModel, OpenAIGenerativeModel, OpenAIEncoderModel):
    """Answers with the last message upper-cased, one word per streamed chunk; `boom` fails
    after the first chunk (the error must reach the client inside the stream)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    async def create_completion(self, request: CompletionRequest) -> CompletionResponse:
        text = str(request.prompt).upper()
        return CompletionResponse(id="c", model=self.name, choices=[CompletionChoice(text=text)])

    async def create_chat_completion(
        self, request: ChatCompletionRequest
    ) -> ChatCompletionResponse | AsyncIterator[ChatCompletionChunk]:
        words = request.messages[-1].text().upper().split()
        if request.stream:
            return self._stream(words)
        message = ResponseMessage(content=" ".join(words))
        return ChatCompletionResponse(
            id="x", model=self.name, choices=[ChatChoice(message=message, finish_reason="stop")]
        )

    async def _stream(self, words: list[str]) -> AsyncIterator[ChatCompletionChunk]:
        for word in words:
            if word == "BOOM":
                raise InvalidInput("boom is not allowed")
            delta = Delta(content=word + " ")
            choice = ChatChunkChoice(delta=delta)
            yield ChatCompletionChunk(id="x", model=self.name, choices=[choice])

    async def create_embedding(self, request: EmbeddingRequest) -> EmbeddingResponse:
        texts = [request.input] if isinstance(request.input, str) else request.input
        data = [Embedding(index=i, embedding=[float(len(str(t)))]) for i, t in enumerate(texts)]
        return EmbeddingResponse(data=data, model=self.name, usage=Usage(prompt_tokens=1))


LIMIT = 4096


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadServer]:
    with ThreadServer([Shouter("shout")], max_request_body_bytes=LIMIT) as running:
        yield running


@pytest.fixture
def client(server: ThreadServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/openai/v1", api_key="none", max_retries=0)


def test_models_lists_openai_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["shout"]


def test_chat_plain_and_streamed(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "ahoy the wharf"}]
    answer = client.chat.completions.create(model="shout", messages=messages)
    assert answer.choices[0].message.content == "AHOY THE WHARF"
    stream = client.chat.completions.create(model="shout", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "AHOY THE WHARF "


def test_the_post_routes_answer_under_v1_too(server: ThreadServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
    assert client.completions.create(model="shout", prompt="low").choices[0].text == "LOW"
    # GET /v1/models stays the V1 protocol's list.
    assert httpx.get(f"{server.url}/v1/models").json() == {"models": ["shout"]}


def test_completions_and_embeddings(client: openai.OpenAI) -> None:
    assert client.completions.create(model="shout", prompt="low").choices[0].text == "LOW"
    vectors = client.embeddings.create(model="shout", input=["a", "abc"]).data
    assert [v.embedding for v in vectors] == [[1.0], [3.0]]


def test_unknown_model_is_404_in_openais_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "nope" in str(caught.value)


def test_malformed_bodies_are_400_naming_the_field(server: ThreadServer) -> None:
    url = f"{server.url}/openai/v1/chat/completions"
    bad = httpx.post(url, json={"model": "shout", "messages": "hi"})
    assert bad.status_code == 400
    assert "messages" in bad.json()["error"]["message"]
    assert httpx.post(url, content=b"{not json").status_code == 400
    empty = httpx.post(f"{server.url}/openai/v1/completions", json={"model": "shout"})
    assert empty.status_code == 400 and "prompt" in empty.json()["error"]["message"]


def test_an_error_mid_stream_arrives_as_an_event_then_done(server: ThreadServer) -> None:
    body = {"model": "shout", "stream": True, "messages": [{"role": "user", "content": "a boom"}]}
    with httpx.stream("POST", f"{server.url}/openai/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = [e for e in text.split("\n\n") if e]
    assert '"content":"A "' in events[0]
    assert "boom is not allowed" in events[1]
    assert events[-1] == "data: [DONE]"


def test_bodies_over_the_limit_are_refused(server: ThreadServer) -> None:
    prompt = "x" * LIMIT
    for chunked in (False, True):
        body = b'{"model": "shout", "prompt": "' + prompt.encode() + b'"}'
        content = iter([body]) if chunked else body
        r = httpx.post(f"{server.url}/openai/v1/completions", content=content)
        assert r.status_code == 413, chunked
