"""The clients people use, pointed at a live gateway: openai-python, LangChain's ChatOpenAI, gradio.load_chat."""
from __future__ import annotations

import asyncio

import httpx2
import openai
import pytest

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything that tries to leave 127.0.0.1 (a tokenizer download, tracing) fails loudly."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.setenv(name, "false")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def base_url(gunicorn) -> str:
    return gunicorn.url + "/v1"


def test_openai_sync_completion_stream_and_models(base_url):
    client = openai.OpenAI(base_url=base_url, api_key="sk-anything", max_retries=0)
    with client:
        _check_sync_client(client)


def _check_sync_client(client: openai.OpenAI) -> None:
    done = client.chat.completions.create(model="echo-app", messages=MESSAGES)
    assert done.choices[0].message.content.startswith("echo: hello there")
    assert done.model == "echo-app" and done.usage.total_tokens > 0
    chunks = list(client.chat.completions.create(model="echo-app", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == done.choices[0].message.content
    assert chunks[-1].usage.completion_tokens > 0
    assert "echo-app" in {m.id for m in client.models.list()}
    assert client.models.retrieve("echo-app").id == "echo-app"


def test_openai_async_completion_and_stream(base_url):
    async def main() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-anything", max_retries=0) as client:
            done = await client.chat.completions.create(model="plain-app", messages=MESSAGES)
            stream = await client.chat.completions.create(model="echo-app", messages=MESSAGES, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return done.choices[0].message.content, text

    plain, echoed = asyncio.run(main())
    assert plain.startswith("You said: hello there")
    assert echoed.startswith("echo: hello there")


def test_openai_error_classes(base_url):
    with openai.OpenAI(base_url=base_url, api_key="sk-anything", max_retries=0) as client:
        _check_error_classes(client)


def _check_error_classes(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="echo-app", messages=MESSAGES, temperature=5)
    assert bad.value.param == "temperature"
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="failing-app", messages=MESSAGES, stream=True)
    assert failed.value.status_code == 502 and "ran out of ideas" in failed.value.message


def test_openai_authentication_error_when_gateway_keys_are_set(make_app):
    app = make_app(GATEWAY_API_KEYS="sk-right")
    http = openai.DefaultHttpxClient(transport=httpx2.WSGITransport(app=app))
    wrong = openai.OpenAI(base_url="http://gateway/v1", api_key="sk-wrong", max_retries=0, http_client=http)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert refused.value.code == "invalid_api_key"
    right = openai.OpenAI(base_url="http://gateway/v1", api_key="sk-right", max_retries=0, http_client=http)
    assert "echo-app" in {m.id for m in right.models.list()}


def test_langchain_chat_openai_invoke_and_stream(base_url):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="echo-app", base_url=base_url, api_key="sk-anything", max_retries=0)
    answer = llm.invoke("hello there")
    assert answer.content.startswith("echo: hello there")
    streamed = "".join(chunk.content for chunk in llm.stream("hello there"))
    assert streamed == answer.content
    with pytest.raises(openai.NotFoundError):
        ChatOpenAI(model="no-such-model", base_url=base_url, api_key="sk-anything", max_retries=0).invoke("hi")


@pytest.mark.parametrize("token", [None, "", "sk-anything", "hf_callersOwnToken0123"])
def test_gradio_load_chat_streams_through_the_gateway(base_url, token):
    import gradio as gr

    # gradio 6.31 sends `token or "***"`: None and "" become a placeholder bearer, which (like sk-…)
    # is not an hf_ token and goes nowhere; an hf_ token is the caller's own, used upstream.
    demo = gr.load_chat(base_url, model="echo-app", token=token)
    replies = list(demo.fn({"text": "hello there", "files": []}, []))
    assert replies[-1].startswith("echo: hello there")
    assert len(replies) > 1                                    # it streamed


def test_gradio_load_chat_without_streaming(base_url):
    import gradio as gr

    demo = gr.load_chat(base_url, model="plain-app", token="sk-anything", streaming=False, file_types=None)
    assert demo.fn("hello there", []).startswith("You said: hello there")
