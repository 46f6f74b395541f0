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
    from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

    torch.manual_seed(0)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        ViTConfig(**_vision()), GPT2Config(vocab_size=128, n_embd=32, n_layer=1, n_head=2, n_positions=32))
    VisionEncoderDecoderModel(cfg).save_pretrained(folder)
    return folder


# ------------------------------------------------------------------ text-to-image


def _clip_tok():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(embedded_root() / "sd" / "tokenizer")
    tok.model_max_length = 77  # as real CLIP tokenizers (the embedded model reads 16)
    return tok


def _clip_text(tok, projection: bool = False, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=len(tok) + 8, hidden_size=hidden, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, projection_dim=hidden,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def _t5(tok, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(tok) + 8, d_model=d_model, d_ff=37, d_kv=8, num_layers=1,
                                   num_heads=2, relative_attention_num_buckets=8))


def _vae(latent: int = 4, **kw):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16), norm_num_groups=8, latent_channels=latent, layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, **kw)


def _unet(**kw):
    from diffusers import UNet2DConditionModel

    args = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
                norm_num_groups=8, cross_attention_dim=32, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2)
    args.update(kw)
    return UNet2DConditionModel(**args)


def sd(folder: Path, scheduler: str = "euler", safety_checker: bool = False, pixelmill_json: dict | None = None,
       variant: str | None = None):
    """SD 1.5 layout. scheduler: 'euler', 'pndm', 'lcm' or 'turbo' (Euler ancestral, trailing timesteps)."""
    import json

    from diffusers import (
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        LCMScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
    )
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    tok = _clip_tok()
    # steps_offset=1 as current SD configs have it (diffusers warns about the outdated 0 when the folder loads)
    sched = {"euler": lambda: EulerDiscreteScheduler(steps_offset=1),
             "pndm": lambda: PNDMScheduler(skip_prk_steps=True, steps_offset=1),
             "lcm": lambda: LCMScheduler(steps_offset=1),
             "turbo": lambda: EulerAncestralDiscreteScheduler(timestep_spacing="trailing", steps_offset=1)}[scheduler]()
    checker = extractor = None
    if safety_checker:
        checker = StableDiffusionSafetyChecker(CLIPConfig(
            text_config=dict(hidden_size=16, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2),
            vision_config=dict(hidden_size=16, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                               image_size=32, patch_size=8), projection_dim=16))
        extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pipe = StableDiffusionPipeline(vae=_vae(), text_encoder=_clip_text(tok), tokenizer=tok, unet=_unet(),
                                   scheduler=sched, safety_checker=checker, feature_extractor=extractor,
                                   requires_safety_checker=safety_checker)
    pipe.save_pretrained(folder, variant=variant)
    if pixelmill_json:
        (folder / "pixelmill.json").write_text(json.dumps(pixelmill_json))
    return folder


def sdxl(folder: Path) -> Path:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    torch.manual_seed(0)
    tok = _clip_tok()
    unet = _unet(cross_attention_dim=64, addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=6 * 8 + 32, use_linear_projection=True)
    StableDiffusionXLPipeline(vae=_vae(), text_encoder=_clip_text(tok), text_encoder_2=_clip_text(tok, True),
                              tokenizer=tok, tokenizer_2=tok, unet=unet, scheduler=EulerDiscreteScheduler()
                              ).save_pretrained(folder)
    return folder


def sd3(folder: Path) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    tok = _clip_tok()
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=64,
                                        caption_projection_dim=32, pooled_projection_dim=64, out_channels=4)
    t5 = _t5(tok, d_model=64)
    StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                             vae=_vae(shift_factor=0.1, scaling_factor=1.5),
                             text_encoder=_clip_text(tok, True), tokenizer=tok, text_encoder_2=_clip_text(tok, True),
                             tokenizer_2=tok, text_encoder_3=t5, tokenizer_3=tok).save_pretrained(folder)
    return folder


def flux(folder: Path, guidance_embeds: bool = True) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    tok = _clip_tok()
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[2, 2, 4],
                                         guidance_embeds=guidance_embeds)
    FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_vae(shift_factor=0.1, scaling_factor=1.0),
                 text_encoder=_clip_text(tok), tokenizer=tok, text_encoder_2=_t5(tok), tokenizer_2=tok,
                 transformer=transformer).save_pretrained(folder)
    return folder


def pixart(folder: Path, sigma: bool = False) -> Path:
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtAlphaPipeline,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )

    torch.manual_seed(0)
    tok = _clip_tok()
    transformer = PixArtTransformer2DModel(sample_size=16, num_layers=1, patch_size=2, attention_head_dim=8,
                                           num_attention_heads=2, caption_channels=32, in_channels=4,
                                           cross_attention_dim=16, out_channels=8, attention_bias=True,
                                           activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                                           norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6)
    cls = PixArtSigmaPipeline if sigma else PixArtAlphaPipeline
    cls(tokenizer=tok, text_encoder=_t5(tok), vae=_vae(), transformer=transformer,
        scheduler=DPMSolverMultistepScheduler()).save_pretrained(folder)
    return folder


def sana(folder: Path) -> Path:
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(0)
    tok = _clip_tok()
    transformer = SanaTransformer2DModel(sample_size=8, patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                         num_attention_heads=2, attention_head_dim=4, num_cross_attention_heads=2,
                                         cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=16)
    vae = AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2, encoder_block_types=(
        "ResBlock", "EfficientViTBlock"), decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8), encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)), encoder_layers_per_block=(1, 1), decoder_layers_per_block=[1, 1],
        downsample_block_type="conv", upsample_block_type="interpolate", decoder_norm_types="rms_norm",
        decoder_act_fns="silu", scaling_factor=0.41407)
    text = Gemma2Model(Gemma2Config(vocab_size=len(tok) + 8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                    max_position_embeddings=512, pad_token_id=tok.pad_token_id))
    SanaPipeline(tokenizer=tok, text_encoder=text, vae=vae, transformer=transformer,
                 scheduler=FlowMatchEulerDiscreteScheduler()).save_pretrained(folder)
    return folder
