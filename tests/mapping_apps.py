"""Real Gradio apps (gradio 6.31) with the parameter names and output shapes the mapping meets.

Most apps answer with a JSON echo of what they received, so a test can see exactly
how the gateway filled each input.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
from gradio.components.chatbot import FileMessage  # noqa: E402
from gradio.data_classes import GradioRootModel  # noqa: E402

def echo(**seen: Any) -> str:
    return json.dumps(seen, sort_keys=True)


def sliders() -> list[gr.Slider]:
    """The five settings of the seed's "x1" flags, with ranges to clamp to."""
    return [gr.Slider(1, 2048, value=512, step=1, label="Max new tokens"),
            gr.Slider(0.1, 1.5, value=0.7, step=0.05, label="Temperature"),
            gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p (nucleus sampling)"),
            gr.Slider(1, 100, value=50, step=1, label="Top-k"),
            gr.Slider(1.0, 2.0, value=1.2, step=0.05, label="Repetition penalty")]


def respond_app() -> gr.Blocks:
    """Gradio 6 ChatInterface: endpoint /respond, message only, streams three characters at a time."""
    def respond(message, history):
        text = f"You said: {message}"
        for end in range(3, len(text) + 3, 3):
            yield text[:end]
    return gr.ChatInterface(respond)


def chat_app() -> gr.Blocks:
    """api_name /chat; message + system_message + the five settings (flags 0x)."""
    def chat(message, history, system_message, max_new_tokens, temperature, top_p, top_k,
             repetition_penalty):
        return echo(message=message, system_message=system_message, turns=len(history),
                    max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                    top_k=top_k, repetition_penalty=repetition_penalty)
    return gr.ChatInterface(chat, api_name="chat", additional_inputs=[
        gr.Textbox("You are a helpful assistant.", label="System message"), *sliders()])


def input_data_app() -> gr.Blocks:
    """input_data + system_prompt + the five settings (flags 1x), a seed and an effort dropdown; streams."""
    def generate(input_data, history, system_prompt, max_new_tokens, temperature, top_p, top_k,
                 repetition_penalty, seed, effort):
        yield echo(input_data=input_data, system_prompt=system_prompt, max_new_tokens=max_new_tokens,
                   temperature=temperature, top_p=top_p, top_k=top_k,
                   repetition_penalty=repetition_penalty, seed=seed, effort=effort)
    return gr.ChatInterface(generate, additional_inputs=[
        gr.Textbox("Reasoning: medium", label="System prompt"), *sliders(),
        gr.Number(0, precision=0, label="Seed"),
        gr.Dropdown(["Low", "Medium", "High"], value="Medium", label="Reasoning effort")])


def policy_app() -> gr.Blocks:
    """prompt + policy + max_new_tokens at /generate (flags 5x), and a second endpoint /summarize."""
    def generate(prompt, policy, max_new_tokens):
        return echo(prompt=prompt, policy=policy, max_new_tokens=max_new_tokens)
    with gr.Blocks() as demo:
        prompt = gr.Textbox(label="Prompt")
        policy = gr.Textbox("Be safe.", label="Policy")
        tokens = gr.Slider(1, 1024, value=256, step=1, label="Max new tokens")
        out = gr.Textbox(label="Verdict")
        prompt.submit(generate, [prompt, policy, tokens], [out], api_name="generate")
        summary = gr.Button("Summarize")
        summary.click(lambda prompt: echo(summarize=prompt), [prompt], [out], api_name="summarize")
    return demo


def query_app() -> gr.Blocks:
    """One input called query, an Interface at /predict."""
    def search(query):
        return echo(query=query)
    return gr.Interface(search, gr.Textbox(label="Query"), gr.Textbox(label="Result"))


def _files(message: dict[str, Any]) -> list[int]:
    return [os.path.getsize(f if isinstance(f, str) else f["path"]) for f in message.get("files", [])]


def vision_app() -> gr.Blocks:
    """Multimodal ChatInterface: message {text, files} + system_prompt + max_new_tokens (flags 2x)."""
    def see(message, history, system_prompt, max_new_tokens):
        return echo(text=message["text"], file_sizes=_files(message), system_prompt=system_prompt,
                    max_new_tokens=max_new_tokens)
    return gr.ChatInterface(see, multimodal=True, additional_inputs=[
        gr.Textbox("You see images.", label="System prompt"),
        gr.Slider(1, 4096, value=1024, step=1, label="Max new tokens")])


def look_app() -> gr.Blocks:
    """Multimodal ChatInterface with the message dict only (flag 3x)."""
    def look(message, history):
        return echo(text=message["text"], file_sizes=_files(message))
    return gr.ChatInterface(look, multimodal=True)


def history_app() -> gr.Blocks:
    """A Blocks app taking the history as a Chatbot input (Gradio 6 messages format)."""
    def converse(message, history):
        return echo(message=message, history=history)
    with gr.Blocks() as demo:
        chatbot = gr.Chatbot(label="Chatbot")
        box = gr.Textbox(label="Message")
        out = gr.Textbox(label="Reply")
        box.submit(converse, [box, chatbot], [out], api_name="converse")
    return demo


class PairsData(GradioRootModel):
    """The Chatbot data of Gradio 3-4: [user, bot] pairs."""

    root: list[tuple[str | FileMessage | None, str | FileMessage | None]]


def pairs_chatbot(label: str) -> gr.JSON:
    """A history input whose API schema is [user, bot] pairs, as Gradio 3-4 Chatbots described it.

    An instance override rather than a subclass: a Component subclass makes Gradio write a .pyi
    stub next to this file.
    """
    component = gr.JSON([], label=label)
    component.api_info = PairsData.model_json_schema  # type: ignore[method-assign]
    return component


def pairs_app() -> gr.Blocks:
    def reply(message, chat_history):
        return echo(message=message, chat_history=chat_history)
    with gr.Blocks() as demo:
        history = pairs_chatbot("Chat history")
        box = gr.Textbox(label="Message")
        out = gr.Textbox(label="Reply")
        box.submit(reply, [box, history], [out], api_name="reply")
    return demo


def reasoning_pair_app() -> gr.Blocks:
    """Streams (reasoning, answer) into two Textboxes."""
    def think(message) -> Iterator[tuple[str, str]]:
        yield "Let me", ""
        yield "Let me think &amp; count.", ""
        yield "Let me think &amp; count.", "It is"
        yield "Let me think &amp; count.", f"It is {len(message)} characters &lt; 100."
    with gr.Blocks() as demo:
        box = gr.Textbox(label="Message")
        reasoning = gr.Textbox(label="Reasoning")
        answer = gr.Textbox(label="Answer")
        box.submit(think, [box], [reasoning, answer], api_name="chat")
    return demo


def details_app() -> gr.Blocks:
    """Streams <details> reasoning HTML before its answer, split mid-tag and mid-entity."""
    def ponder(message, history):
        full = ("<details><summary>Thinking</summary>Two &amp; two</details>"
                f"\n\nThe answer to {message} is 4 &lt; 5.")
        for end in (4, 12, 40, 52, 60, 75, len(full)):
            yield full[:end]
    return gr.ChatInterface(ponder)


def thoughts_app() -> gr.Blocks:
    """Streams gr.ChatMessage thoughts (metadata title) and then the answer."""
    def reflect(message, history):
        thought = {"title": "Thinking"}
        yield [gr.ChatMessage(role="assistant", content="Hmm", metadata=thought)]
        yield [gr.ChatMessage(role="assistant", content="Hmm, easy.", metadata=thought)]
        yield [gr.ChatMessage(role="assistant", content="Hmm, easy.", metadata=thought),
               gr.ChatMessage(role="assistant", content=f"Answer: {message}")]
    return gr.ChatInterface(reflect)


def extras_app() -> gr.Blocks:
    """A ChatInterface with an additional output: its outputs are [response, null, status]."""
    with gr.Blocks() as demo:
        status = gr.Textbox(label="Status", render=False)

        def answer(message, history):
            return f"Answer to {message}", "status: ok"
        gr.ChatInterface(answer, additional_outputs=[status])
        status.render()
    return demo


def answer_file() -> str:
    path = os.path.join(tempfile.gettempdir(), "mapping-answer.txt")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("hello")
    return path


def attach_app() -> gr.Blocks:
    """A ChatInterface answering {text, files}: the API shows the file by its server path only."""
    def attach(message, history):
        return {"text": f"Attached {message}.", "files": [answer_file()]}
    return gr.ChatInterface(attach)


def file_app() -> gr.Blocks:
    """Returns a file and a text."""
    path = answer_file()

    def make(message):
        return path, f"Here is {message}."
    with gr.Blocks() as demo:
        box = gr.Textbox(label="Message")
        out_file = gr.File(label="File")
        out_text = gr.Textbox(label="Text")
        box.submit(make, [box], [out_file, out_text], api_name="chat")
    return demo


APPS: dict[str, Callable[[], gr.Blocks]] = {
    "respond": respond_app, "chat": chat_app, "input-data": input_data_app, "policy": policy_app,
    "query": query_app, "vision": vision_app, "look": look_app, "history": history_app,
    "pairs": pairs_app, "reasoning-pair": reasoning_pair_app, "details": details_app,
    "thoughts": thoughts_app, "extras": extras_app, "file": file_app,
    "attach": attach_app,
}
