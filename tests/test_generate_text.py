"""generate_text against a local OpenAI-compatible server (tests/openai_fake.py) and a tiny local causal LM."""

from __future__ import annotations

import gc
import json
import socket
import threading
import time

import pytest

from pixelmill.node import Cancelled
from pixelmill.testing import make_context
from pixelmill.text.errors import SchemaNotMet, ServerDown, UnknownModel
from pixelmill_nodes.generate_text import GenerateTextNode

from .openai_fake import FakeOpenAI

SCENES = {
    "type": "object",
    "properties": {"title": {"type": "string"},
                   "scenes": {"type": "array", "minItems": 2,
                              "items": {"type": "object", "required": ["text", "prompt"],
                                        "properties": {"text": {"type": "string"}, "prompt": {"type": "string"}}}}},
    "required": ["title", "scenes"],
}
GOOD = {"title": "The lighthouse", "scenes": [{"text": "Night falls.", "prompt": "a lighthouse at night"},
                                              {"text": "Dawn.", "prompt": "a lighthouse at dawn"}]}


def node(base_url, **config):
    cfg = {"provider": "openai_compatible", "base_url": base_url, "model": "tiny-chat", **config}
    return GenerateTextNode(GenerateTextNode.Config.model_validate(cfg))


def run(n, tmp_path, environ=None, **inputs):
    ctx = make_context(tmp_path, environ=environ or {})
    return n.run(GenerateTextNode.Inputs.model_validate(inputs), ctx), ctx


def test_plain_completion_sends_templated_messages_and_options(tmp_path):
    with FakeOpenAI() as srv:
        srv.reply("A quiet harbour at dusk.")
        out, _ = run(node(srv.base_url, api_key_secret="LLM_KEY"), tmp_path, {"LLM_KEY": "sk-test-1234"},
                     system="You write {{ style }} captions.", prompt="Describe {{ place }}.",
                     vars={"style": "short", "place": "a harbour"}, temperature=0.2, max_tokens=40, seed=7,
                     stop=["\n\n"])
    assert out.text == "A quiet harbour at dusk." and out.json is None
    assert out.usage.completion_tokens == 5 and out.usage.prompt_tokens == 7 and out.usage.total_tokens == 12
    assert out.model == "tiny-chat" and out.finish_reason == "stop"
    (req,) = srv.chat_requests()
    assert req["headers"]["Authorization"] == "Bearer sk-test-1234"
    assert req["body"]["messages"] == [{"role": "system", "content": "You write short captions."},
                                      {"role": "user", "content": "Describe a harbour."}]
    assert {k: req["body"][k] for k in ("model", "temperature", "max_tokens", "seed", "stop")} == {
        "model": "tiny-chat", "temperature": 0.2, "max_tokens": 40, "seed": 7, "stop": ["\n\n"]}
    assert "stream" not in req["body"] and "response_format" not in req["body"]
    dumped = GenerateTextNode.Outputs.model_validate(out.model_dump()).model_dump(mode="json")
    assert "json" in dumped and "sk-test-1234" not in json.dumps(dumped)


def test_structured_output_fails_validation_once_and_is_repaired(tmp_path):
    with FakeOpenAI() as srv:
        bad = json.dumps({"title": "The lighthouse", "scenes": [{"text": "Night falls."}]})  # no prompt, 1 scene
        good = "```json\n" + json.dumps(GOOD) + "\n```"
        srv.reply(bad).reply(good)
        out, _ = run(node(srv.base_url), tmp_path, prompt="Write a story.", json_schema=SCENES)
    assert out.json == GOOD and out.attempts == 2
    first, second = srv.chat_requests()
    assert first["body"]["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": SCENES, "strict": True}}
    repair = second["body"]["messages"]
    assert repair[-2]["role"] == "assistant" and "Night falls." in repair[-2]["content"]
    assert repair[-1]["role"] == "user" and "'prompt' is a required property" in repair[-1]["content"]
    assert "is too short" in repair[-1]["content"]
    assert out.usage.completion_tokens == len(bad.split()) + len(good.split())  # both calls add up


def test_server_without_response_format_gets_the_schema_in_the_prompt(tmp_path):
    with FakeOpenAI(supports_response_format=False) as srv:
        srv.reply(json.dumps(GOOD))
        out, _ = run(node(srv.base_url), tmp_path, system="You are a storyteller.", prompt="Story.",
                     json_schema=SCENES)
    assert out.json == GOOD
    rejected, accepted = srv.chat_requests()
    assert "response_format" in rejected["body"] and "response_format" not in accepted["body"]
    system = accepted["body"]["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("You are a storyteller.")
    assert json.dumps(SCENES, separators=(",", ":")) in system["content"]


def test_schema_never_met_is_a_clear_error(tmp_path):
    with FakeOpenAI() as srv:
        for _ in range(3):
            srv.reply("Once upon a time...")
        with pytest.raises(SchemaNotMet, match="after 2 repair attempt.*not valid JSON"):
            run(node(srv.base_url, max_repairs=2), tmp_path, prompt="Story.", json_schema=SCENES)
    assert len(srv.chat_requests()) == 3


def test_429_retry_after_is_honoured(tmp_path):
    with FakeOpenAI() as srv:
        srv.reply(status=429, headers={"Retry-After": "1"},
                  error={"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limit_exceeded"})
        srv.reply(status=503, error={"message": "overloaded", "type": "server_error"})
        srv.reply("ok")
        out, ctx = run(node(srv.base_url), tmp_path, prompt="hi")
    assert out.text == "ok"
    t = srv.times
    assert len(t) == 3 and t[1] - t[0] >= 0.95  # waited the second Retry-After asked for
    assert 0.3 <= t[2] - t[1] < 1.5  # no Retry-After: a short backoff (0.5 s, then doubling)
    assert any("Retry-After" in m for _, _, m in ctx.progress_log)


def test_retry_after_past_the_limit_and_cancel_while_waiting(tmp_path):
    with FakeOpenAI() as srv:
        srv.reply(status=429, headers={"Retry-After": "600"})
        t0 = time.monotonic()
        with pytest.raises(Exception, match="asks to wait 600 s.*max_retry_wait_s"):
            run(node(srv.base_url, max_retry_wait_s=30), tmp_path, prompt="hi")
        assert time.monotonic() - t0 < 2

        srv.reply(status=429, headers={"Retry-After": "20"})
        n = node(srv.base_url)
        ctx = make_context(tmp_path)
        threading.Timer(0.3, ctx.cancel_event.set).start()  # the step's deadline passes while it waits
        t0 = time.monotonic()
        with pytest.raises(Cancelled):
            n.run(GenerateTextNode.Inputs(prompt="hi"), ctx)
        assert time.monotonic() - t0 < 3


def test_server_down_says_so(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ServerDown, match=f"is the server running at {url}\\?.*connection refused"):
        run(node(url), tmp_path, prompt="hi")


def test_unknown_model_names_it_and_lists_the_servers_models(tmp_path):
    with FakeOpenAI(models=["llama3.2", "qwen2.5:0.5b"]) as srv:
        with pytest.raises(UnknownModel, match=r"has no model 'tiny-chat'.*it has: llama3.2, qwen2.5:0.5b"):
            run(node(srv.base_url), tmp_path, prompt="hi")


def test_wrong_base_url_path_is_named(tmp_path):
    with FakeOpenAI() as srv:
        with pytest.raises(Exception, match="check base_url, which usually ends in /v1"):
            run(node(srv.base_url[: -len("/v1")]), tmp_path, prompt="hi")


def test_streaming_assembles_text_reports_progress_and_usage(tmp_path):
    words = " ".join(f"w{i}" for i in range(40))
    with FakeOpenAI() as srv:
        srv.reply(words)
        out, ctx = run(node(srv.base_url, stream=True), tmp_path, prompt="count", max_tokens=64)
    assert out.text == words and out.finish_reason == "stop"
    assert out.usage.completion_tokens == 40 and out.usage.prompt_tokens == 1
    (req,) = srv.chat_requests()
    assert req["body"]["stream"] is True and req["body"]["stream_options"] == {"include_usage": True}
    assert any(m == "generating" for _, _, m in ctx.progress_log)


@pytest.mark.parametrize("config, inputs, replies", [
    ({}, {"prompt": "hi {{ x }}", "vars": {"x": 1}}, []),
    ({"stream": True}, {"prompt": "hi there"}, []),
    ({"structured": "prompt"}, {"prompt": "story", "json_schema": SCENES}, ["not json", json.dumps(GOOD)]),
])
def test_a_call_leaves_no_reference_cycles(tmp_path, config, inputs, replies):
    # garbage in cycles waits for the collector: more collections, and a slower node than the raw HTTP call
    with FakeOpenAI() as srv:
        n, ctx = node(srv.base_url, **config), make_context(tmp_path)
        parsed = GenerateTextNode.Inputs.model_validate(inputs)
        gc.disable()
        try:
            for i in range(11):
                if i == 1:  # after a first call that fills the caches
                    gc.collect()
                for r in replies:
                    srv.reply(r)
                n.run(parsed, ctx)
            found = gc.collect()
        finally:
            gc.enable()
    assert found < 10, f"{found} objects in reference cycles after 10 calls"


def test_config_errors_at_load():
    with pytest.raises(Exception, match="needs base_url"):
        GenerateTextNode.Config.model_validate({"model": "m"})
    with pytest.raises(Exception, match="not a secret name"):
        GenerateTextNode.Config.model_validate({"model": "m", "base_url": "http://x/v1", "api_key_secret": "sk-abc"})
    with pytest.raises(Exception, match="not a valid JSON Schema"):
        GenerateTextNode.Inputs.model_validate({"prompt": "p", "json_schema": {"type": "objekt"}})
    with pytest.raises(Exception, match="no embedded language model"):
        GenerateTextNode.Config.model_validate({"provider": "transformers", "model": "embedded"})


def test_workflow_runs_it_and_rejects_expressions_inside_templates(tmp_path, runtime):
    from pixelmill.loader import load_text
    from pixelmill.status import RunStatus

    with FakeOpenAI() as srv:
        srv.reply(json.dumps(GOOD))
        wf = load_text(f"""
name: story
inputs: {{topic: {{type: string}}}}
steps:
  - id: write
    node: generate_text
    config: {{base_url: "{srv.base_url}", model: tiny-chat}}
    with:
      prompt: "A story about {{{{ topic }}}}."
      vars: {{topic: "${{{{ inputs.topic }}}}"}}
      json_schema: {json.dumps(SCENES)}
outputs:
  title: "${{{{ steps.write.outputs.json.title }}}}"
  prompts: "${{{{ steps.write.outputs.json.scenes }}}}"
""", "story.yaml", runtime.registry)
        result = runtime.run(wf, {"topic": "{{ 7*7 }} lighthouses"})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.outputs["title"] == "The lighthouse"
    # the input's text reached the model as data: '{{ 7*7 }}' was not rendered
    assert srv.chat_requests()[0]["body"]["messages"][-1]["content"] == "A story about {{ 7*7 }} lighthouses."

    with pytest.raises(Exception, match=r"story2.yaml:\d+:\d+.*holds a \$\{\{ \}\} expression"):
        load_text("""
name: story2
inputs: {topic: {type: string}}
steps:
  - id: write
    node: generate_text
    config: {base_url: "http://127.0.0.1:9/v1", model: m}
    with:
      prompt: "About ${{ inputs.topic }} and {{ x }}"
      vars: {x: 1}
""", "story2.yaml", runtime.registry)


def test_both_nodes_are_registered_through_entry_points_and_follow_the_contract():
    from pixelmill.registry import Registry, check_contract
    from pixelmill_nodes.make_video import MakeVideoNode

    reg = Registry.from_entry_points()
    for cls in (GenerateTextNode, MakeVideoNode):
        check_contract(cls)
        assert reg.get(cls.type).cls is cls
