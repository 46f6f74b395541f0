"""A local causal language model through transformers: its own chat template, seeded sampling, stop strings.

Loading follows the model rules of ``pixelmill.models``: a folder or an id from the local Hugging Face cache,
offline unless PIXELMILL_ALLOW_DOWNLOADS=1.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..models.locate import ModelNotAvailable, downloads_allowed, not_available_message
from .errors import TextGenerationError
from .result import Completion, Usage


@dataclass
class LocalLM:
    model: Any
    tokenizer: Any
    device: str
    lock: threading.Lock = field(default_factory=threading.Lock)  # sampling seeds torch's global generator


def load_causal_lm(name: str, source: str, device: str, dtype) -> LocalLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {} if downloads_allowed() else {"local_files_only": True}
    try:
        import transformers.utils.logging as tlog

        tlog.disable_progress_bar()  # no bars in a server log
    except Exception:  # noqa: BLE001 - cosmetics only
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except Exception as exc:  # noqa: BLE001 - mapped to a message that says what to do
        if not os.path.isdir(source) and (isinstance(exc, OSError) or "offline" in str(exc).lower()):
            raise ModelNotAvailable(not_available_message(name, "language", exc)) from exc
        raise ModelNotAvailable(f"language model '{name}' could not be loaded from {source}: {exc}") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise ModelNotAvailable(f"language model '{name}' has no chat template (tokenizer_config.json "
                                "'chat_template'): use an instruction-tuned/chat model")
    return LocalLM(model.to(device).eval(), tokenizer, device)


def chat_local(lm: LocalLM, messages: list[dict], *, temperature: float | None = None, max_tokens: int = 256,
               seed: int | None = None, stop: list[str] | None = None,
               on_token: Callable[[int], None] | None = None) -> Completion:
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    tok = lm.tokenizer
    try:
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    except Exception as exc:  # noqa: BLE001 - a template that rejects the roles given (e.g. no system role)
        raise TextGenerationError(f"the model's chat template failed on these messages: {exc}") from None
    input_ids = ids["input_ids"].to(lm.device)
    attention = ids.get("attention_mask")
    start = input_ids.shape[1]
    stops = [s for s in (stop or []) if s]

    class _Watch(StoppingCriteria):
        def __call__(self, seq, scores, **kwargs):
            n = seq.shape[1] - start
            if on_token is not None:
                on_token(n)  # may raise Cancelled: generation stops there
            if stops:
                tail = tok.decode(seq[0, start:], skip_special_tokens=True)
                return torch.tensor([any(s in tail for s in stops)], device=seq.device)
            return torch.tensor([False], device=seq.device)

    sample = bool(temperature) and temperature > 0
    gen_kwargs = {"max_new_tokens": max_tokens, "do_sample": sample,
                  "stopping_criteria": StoppingCriteriaList([_Watch()]),
                  "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
    if sample:
        gen_kwargs.update(temperature=float(temperature), top_k=0, top_p=1.0)
    with lm.lock, torch.inference_mode():
        if seed is not None:
            torch.manual_seed(seed)
        out = lm.model.generate(input_ids=input_ids,
                                attention_mask=attention.to(lm.device) if attention is not None else None,
                                **gen_kwargs)
    new = out[0, start:]
    text = tok.decode(new, skip_special_tokens=True)
    finish = "length" if len(new) >= max_tokens else "stop"
    for s in stops:
        if s in text:
            text, finish = text[: text.index(s)], "stop"
    return Completion(text=text, usage=Usage(start, int(len(new)), start + int(len(new))), finish_reason=finish,
                      model="")
