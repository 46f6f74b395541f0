"""Tiny random-weight model folders of real architectures, built while the tests run (no model hub).

Hidden sizes 8-32, one or two layers: each folder is a few hundred KB and loads in well under a second.
The tokenizers are the embedded ones (a BERT WordPiece vocabulary for the captioners, CLIP BPE for the
text-to-image text encoders), which every architecture here accepts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pixelmill.models.locate import embedded_root


def _bert_tok(extra: list[str] | None = None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_root() / "blip")
    if extra:
        tok.add_special_tokens({"additional_special_tokens": extra})
        tok.model_max_length = 256
        tok.backend_tokenizer.no_truncation()  # the embedded vocabulary's tokenizer cuts at 16 tokens
        tok.init_kwargs.pop("max_length", None)
    return tok


def _blip_image_processor():
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": 32, "width": 32})


def _vision(**kw) -> dict:
    return dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                patch_size=8, **kw)


def blip(folder: Path) -> Path:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor

    torch.manual_seed(0)
    tok = _bert_tok()
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, encoder_hidden_size=32, intermediate_size=37,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                         bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, sep_token_id=tok.sep_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=_vision(),
    )
    BlipForConditionalGeneration(cfg).save_pretrained(folder)
    BlipProcessor(_blip_image_processor(), tok).save_pretrained(folder)
    return folder


def blip2(folder: Path) -> Path:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor

    torch.manual_seed(0)
    tok = _bert_tok(["<image>"])
    tok.image_token = "<image>"
    cfg = Blip2Config(
        vision_config=_vision(),
        qformer_config=dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=37, encoder_hidden_size=32, max_position_embeddings=32),
        text_config=dict(model_type="opt", vocab_size=len(tok), hidden_size=32, ffn_dim=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=32,
                         bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id),
        num_query_tokens=4, image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    Blip2ForConditionalGeneration(cfg).save_pretrained(folder)
    Blip2Processor(_blip_image_processor(), tok, num_query_tokens=4).save_pretrained(folder)
    return folder


def git(folder: Path) -> Path:
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    torch.manual_seed(0)
    tok = _bert_tok()
    cfg = GitConfig(vision_config=_vision(), vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=37, max_position_embeddings=64,
                    bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    GitForCausalLM(cfg).save_pretrained(folder)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    GitProcessor(ip, tok).save_pretrained(folder)
    return folder


def llava(folder: Path) -> Path:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    torch.manual_seed(0)
    tok = _bert_tok(["<image>"])
    tok.image_token = "<image>"
    cfg = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", **_vision(projection_dim=32)),
        text_config=dict(model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=37,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id),
        image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
    )
    LlavaForConditionalGeneration(cfg).save_pretrained(folder)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    LlavaProcessor(ip, tok, patch_size=8, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1).save_pretrained(folder)
    return folder


def vit_gpt2(folder: Path) -> Path:
    """A captioner of an architecture pixelmill does not claim (VisionEncoderDecoder: ViT + GPT-2)."""
    from transformers import GPT2Config, ViTConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    torch.manual_seed(0)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        ViTConfig(**_vision()), GPT2Config(vocab_size=128, n_embd=32, n_layer=1, n_head=2, n_positions=32))
    VisionEncoderDecoderModel(cfg).save_pretrained(folder)
    return folder
