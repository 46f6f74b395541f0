"""The transformers provider: a tiny Llama built here (seeded, trained for a few seconds; a byte-level BPE
tokenizer trained in a second; a chat template), loaded offline through the shared model manager."""

from __future__ import annotations

import pytest

from pixelmill.models.locate import ModelNotAvailable
from pixelmill.node import Services
from pixelmill.testing import make_context
from pixelmill.text.errors import SchemaNotMet
from pixelmill_nodes.generate_text import GenerateTextNode

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-lm")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["a lighthouse on a rocky coast at night", "a small red circle on a blue background",
              "once upon a time there was a story about the sea"] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                         bos_token_id=None, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    # a few seconds of training: after any chat prompt it writes sea stories (and never ends by itself)
    story = " ".join(corpus[:3] * 3)
    texts = [fast.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                      tokenize=False) + story for p in ("hello", "Tell a story.", "json please")]
    batch = fast(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(folder)
    return str(folder)


def local(folder, **config):
    return GenerateTextNode(GenerateTextNode.Config.model_validate(
        {"provider": "transformers", "model": folder, "device": "cpu", **config}))


def run(n, tmp_path, services=None, **inputs):
    ctx = make_context(tmp_path, services=services)
    return n.run(GenerateTextNode.Inputs.model_validate(inputs), ctx), ctx


def test_local_model_through_the_manager_seeded_and_counted(tiny_lm, tmp_path):
    services = Services()
    n = local(tiny_lm)
    a, ctx = run(n, tmp_path, services, system="Be brief.", prompt="Tell a story.", max_tokens=12,
                 temperature=1.0, seed=5)
    b, _ = run(n, tmp_path, services, system="Be brief.", prompt="Tell a story.", max_tokens=12,
               temperature=1.0, seed=5)
    assert a.text == b.text and a.text.strip()
    assert a.usage.completion_tokens == 12 and a.finish_reason == "length"
    assert a.usage.prompt_tokens > 5 and a.usage.total_tokens == a.usage.prompt_tokens + 12
    assert a.model == tiny_lm
    others = {run(n, tmp_path, services, prompt="Tell a story.", max_tokens=12, temperature=2.0, seed=s)[0].text
              for s in range(6)}
    assert len(others) > 1  # the seed picks the sample
    manager = services.get("pixelmill.models")
    assert list(manager.load_counts.values()) == [1]  # one load, shared by every call
    assert [m for _, _, m in ctx.progress_log].count("generating") >= 12


def test_chat_template_and_stop_strings(tiny_lm, tmp_path):
    n = local(tiny_lm)
    full, _ = run(n, tmp_path, prompt="hello", max_tokens=16, temperature=0)
    cut = full.text[len(full.text) // 2: len(full.text) // 2 + 3]
    assert cut.strip()
    stopped, _ = run(n, tmp_path, prompt="hello", max_tokens=16, temperature=0, stop=[cut])
    assert stopped.text == full.text[: full.text.index(cut)] and stopped.finish_reason == "stop"
    assert stopped.usage.completion_tokens < 16


def test_structured_output_from_a_model_that_cannot_write_json_fails_clearly(tiny_lm, tmp_path):
    n = local(tiny_lm, max_repairs=1)
    with pytest.raises(SchemaNotMet, match="after 1 repair attempt"):
        run(n, tmp_path, prompt="json please", max_tokens=6, temperature=0,
            json_schema={"type": "object", "required": ["title"]})


def test_missing_model_follows_the_offline_rules(tmp_path, monkeypatch):
    monkeypatch.delenv("PIXELMILL_ALLOW_DOWNLOADS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable, match="'nobody/no-such-lm' is not on this machine.*downloads are off"):
        run(local("nobody/no-such-lm"), tmp_path, prompt="hi")
