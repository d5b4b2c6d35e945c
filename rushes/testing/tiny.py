"""Tiny random-weight models of real families, built offline for tests, benchmarks and smoke runs.

Each builder writes a folder that loads through the same ``from_pretrained`` path a user's real model id
takes (no download): the family's real config, model classes and tokenizer/processors, with random
weights and a tiny byte-level BPE vocabulary trained here with ``tokenizers``.

- :func:`save_tiny_text_encoder`: a T5 encoder or CLIP text model (``rushes.train.encoders.TextEncoder``).
- :func:`save_tiny_vae`: a diffusers image VAE or causal video VAE (``rushes.train.encoders.Vae``).
- :func:`build_tiny_qwen25_vl`, :func:`build_tiny_smolvlm`: vision-language captioners (``caption``).

Usage::

    from rushes.testing.tiny import build_tiny_qwen25_vl, save_tiny_text_encoder
    path = build_tiny_qwen25_vl(tmp_dir / "qwen", text_layers=2)
    t5 = save_tiny_text_encoder(tmp_dir / "t5", kind="t5")

The traps the VLM builders avoid are listed in docs/design.md section 6 (special tokens as single tokens with
their ids in the model config, eos/pad ids in both text and generation configs, left padding,
``mrope_section`` summing to head_dim // 2).
"""


from __future__ import annotations

import os
from pathlib import Path

# A small corpus so the BPE learns a few English merges; the words of the caption prompts are in it.
_CORPUS = [
    "Describe this video clip in detail: the main subject, what happens, the setting, the camera motion "
    "and framing, the lighting and visual style, and any visible text.",
    "A person walks along a beach at sunset while the camera pans slowly to the right.",
    "Close-up shot of a red car driving down a city street at night, neon lights, handheld camera.",
    "Return a JSON object with the fields short_caption, dense_caption, camera_motion and shot_type.",
    '{"short_caption": "a dog runs", "dense_caption": "A brown dog runs across a green field.", '
    '"camera_motion": "static", "shot_type": "wide"}',
    "You are provided the following series of frames from a video. Frame from 00:01:",
    "system user assistant You are a helpful assistant. The quick brown fox jumps over the lazy dog 0123456789.",
]

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
SMOLVLM_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>", "<image>",
                   "<fake_token_around_image>", "<global-img>", "<video>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]

# Qwen2-VL's chat template (the same text ships with Qwen2.5-VL-*-Instruct).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _bpe(corpus: list[str], special_tokens: list[str], vocab_size: int, add_prefix_space: bool):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``corpus``; special tokens get the first ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    return tok


def train_bpe(special_tokens: list[str], vocab_size: int = 512) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE on the small corpus; special tokens get the first ids. Returns (vocab, merges)."""
    import json

    model = json.loads(_bpe(_CORPUS, special_tokens, vocab_size, add_prefix_space=False).to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _save_generation(model, tok, eos: list[int], pad: int, out: Path) -> None:
    from transformers import GenerationConfig

    # Greedy and a fixed stop set: batched generate needs eos and pad in the generation config too.
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=None,
                                               do_sample=False)
    model.save_pretrained(out, safe_serialization=True)


def build_tiny_qwen25_vl(out: str | os.PathLike, text_layers: int = 2, hidden: int = 64,
                         max_pixels: int = 56 * 56, seed: int = 0, heads: int = 4) -> Path:
    """Write a random-weight Qwen2.5-VL (model, Qwen2Tokenizer, Qwen2VL image/video processors, chat template).

    Frames are resized by the processor to at most ``max_pixels`` pixels (multiples of 28), so a 56x56
    frame pair is 4 visual tokens. ``text_layers``/``hidden``/``heads`` size the language model (bench uses more;
    Qwen2.5-VL-7B's is 28 x 3584 with 28 heads of 128).
    """
    import torch
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    out = Path(out)
    vocab, merges = train_bpe(QWEN_SPECIAL)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         unk_token="<|endoftext|>", extra_special_tokens=QWEN_SPECIAL[1:])
    tok.padding_side = "left"
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    head_dim = hidden // heads
    unit = head_dim // 16  # real Qwen: head_dim 128 -> mrope_section [16, 24, 24], sums to head_dim // 2
    text = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=2,
                max_position_embeddings=4096, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                bos_token_id=None,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [2 * unit, 3 * unit, 3 * unit]})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=56, out_hidden_size=hidden,
                  fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    _save_generation(model, tok, [ids["<|im_end|>"], ids["<|endoftext|>"]], ids["<|endoftext|>"], out)
    size = {"shortest_edge": 56 * 56, "longest_edge": max_pixels}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2),
        video_processor=Qwen2VLVideoProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2),
        tokenizer=tok, chat_template=QWEN_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out


def build_tiny_smolvlm(out: str | os.PathLike, text_layers: int = 2, hidden: int = 64, image_px: int = 32,
                       seed: int = 0) -> Path:
    """Write a random-weight SmolVLM (Idefics3-style) with its real processors and video chat template.

    Every frame is resized to ``image_px`` square (the family's ``max_image_size``) and becomes
    (image_px / 8)^2 / 4 visual tokens.
    """
    import torch
    from transformers import (GPT2Tokenizer, SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessor,
                              SmolVLMProcessor, SmolVLMVideoProcessor)
    from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

    out = Path(out)
    vocab, merges = train_bpe(SMOLVLM_SPECIAL)
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, eos_token="<end_of_utterance>", pad_token="<|endoftext|>",
                        unk_token="<|endoftext|>", bos_token="<|im_start|>", extra_special_tokens=SMOLVLM_SPECIAL[3:])
    tok.padding_side = "left"
    ids = {t: tok.convert_tokens_to_ids(t) for t in SMOLVLM_SPECIAL}
    patch, scale = 8, 2
    text = dict(model_type="llama", vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=4096, eos_token_id=ids["<end_of_utterance>"],
                pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|im_start|>"], rms_norm_eps=1e-5)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_px, patch_size=patch)
    config = SmolVLMConfig(text_config=text, vision_config=vision, image_token_id=ids["<image>"],
                           scale_factor=scale, pad_token_id=ids["<|endoftext|>"])
    torch.manual_seed(seed)
    model = SmolVLMForConditionalGeneration(config).eval()
    _save_generation(model, tok, [ids["<end_of_utterance>"], ids["<|endoftext|>"]], ids["<|endoftext|>"], out)
    seq_len = (image_px // patch) ** 2 // scale ** 2
    sizes = dict(size={"longest_edge": image_px}, max_image_size={"longest_edge": image_px})
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(do_image_splitting=False, **sizes),
        video_processor=SmolVLMVideoProcessor(**sizes),
        tokenizer=tok, image_seq_len=seq_len, chat_template=DEFAULT_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out


_CAPTIONS = ["a dog runs on a beach at sunset while the camera pans", "a black and white film of a man walking",
             "an animated rabbit in a green forest, bright colours", "fire burning at night, fast motion",
             "close-up of a cockatoo bird, handheld camera", "the quick brown fox jumps over the lazy dog"]


def _text_tokenizer(kind: str, vocab_size: int, end_token: bool):
    """The tiny byte-level BPE of a T5 (appends ``</s>``) or CLIP (wraps in start/end) text encoder."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    if kind not in ("t5", "clip"):
        raise ValueError(f"unknown tiny text encoder kind {kind!r}; use 't5' or 'clip'")
    specials = ["<pad>", "</s>", "<unk>"] if kind == "t5" else ["<|endoftext|>", "<|startoftext|>"]
    tok = _bpe(_CAPTIONS, specials, vocab_size, add_prefix_space=True)
    if kind == "t5":
        if end_token:
            tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        return tok, PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                            unk_token="<unk>")
    single = "<|startoftext|> $A <|endoftext|>" if end_token else "$A"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[("<|startoftext|>", 1), ("<|endoftext|>", 0)])
    return tok, PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|endoftext|>",
                                        bos_token="<|startoftext|>")


def save_tiny_text_encoder(path: str | os.PathLike, kind: str = "t5", hidden: int = 32, vocab_size: int = 400,
                           seed: int = 0, end_token: bool = True) -> str:
    """Write a tiny random-weight T5 encoder (``kind="t5"``) or CLIP text model (``"clip"``) with a
    byte-level BPE tokenizer to ``path``; returns the path, loadable with ``rushes.train.encoders.TextEncoder``.

    ``end_token=False`` builds a tokenizer that adds no special token at all (as some real encoders' do),
    so the empty caption tokenises to zero tokens.
    """
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tok, fast = _text_tokenizer(kind, vocab_size, end_token)
    torch.manual_seed(seed)
    if kind == "t5":
        cfg = T5Config(vocab_size=tok.get_vocab_size(), d_model=hidden, d_kv=8, d_ff=2 * hidden, num_layers=2,
                       num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        model = T5EncoderModel(cfg)
    else:
        cfg = CLIPTextConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=2 * hidden,
                             num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                             pad_token_id=0, bos_token_id=1, eos_token_id=0)
        model = CLIPTextModel(cfg)
    model.save_pretrained(Path(path))
    fast.save_pretrained(Path(path))
    return str(path)


def save_tiny_vae(path: str | os.PathLike, kind: str = "image", seed: int = 0) -> str:
    """Write a tiny random-weight diffusers VAE to ``path``: ``"image"`` (AutoencoderKL, 4x spatial) or
    ``"wan"`` (AutoencoderKLWan, 4x temporal, 4x spatial). Returns the path, loadable with ``rushes.train.encoders.Vae``."""
    import torch
    from diffusers import AutoencoderKL, AutoencoderKLWan

    torch.manual_seed(seed)
    if kind == "image":
        vae = AutoencoderKL(block_out_channels=(8, 8, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                            up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=4,
                            layers_per_block=1, sample_size=32)
    elif kind == "wan":
        vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 2], num_res_blocks=1,
                               temperal_downsample=[True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
                               scale_factor_temporal=4, scale_factor_spatial=4)
    else:
        raise ValueError(f"unknown tiny VAE kind {kind!r}; use 'image' or 'wan'")
    vae.save_pretrained(path)
    return str(path)


_UMT5_WORDS = sorted({w for c in _CAPTIONS + _CORPUS for w in c.lower().replace(",", " ").replace(".", " ").split()})


def tiny_umt5_tokenizer():
    """A tiny Unigram (SentencePiece-style) ``T5Tokenizer`` like umT5's: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, the
    words of the test captions and every printable ASCII character as pieces; appends ``</s>``. Built offline."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -1.0) for w in _UMT5_WORDS]
    pieces += [(chr(c), -5.0) for c in range(33, 127)]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def save_tiny_umt5(path: str | os.PathLike, hidden: int = 32, seed: int = 0, tokenizer_path=None) -> str:
    """Write a tiny random-weight ``UMT5EncoderModel`` (Wan's text encoder family) with :func:`tiny_umt5_tokenizer`
    beside it (or in ``tokenizer_path``, as a pipeline repo keeps it in ``tokenizer/``); returns ``path``."""
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    tok = tiny_umt5_tokenizer()
    torch.manual_seed(seed)
    cfg = UMT5Config(vocab_size=len(tok), d_model=hidden, d_kv=8, d_ff=2 * hidden, num_layers=2, num_heads=4,
                     pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    UMT5EncoderModel(cfg).save_pretrained(Path(path))
    tok.save_pretrained(Path(tokenizer_path or path))
    return str(path)


def tiny_wan_transformer(in_channels: int = 4, text_dim: int = 32, heads: int = 2, head_dim: int = 16,
                         layers: int = 2, ffn_dim: int = 64, freq_dim: int = 32, patch=(1, 2, 2),
                         cross_attn_norm: bool = True, seed: int = 0, dtype=None):
    """A random-weight diffusers ``WanTransformer3DModel`` of the real class at a tiny size (every weight random,
    biases and norms included, so no path of the model is an identity)."""
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    model = WanTransformer3DModel(patch_size=tuple(patch), num_attention_heads=heads, attention_head_dim=head_dim,
                                  in_channels=in_channels, out_channels=in_channels, text_dim=text_dim,
                                  freq_dim=freq_dim, ffn_dim=ffn_dim, num_layers=layers,
                                  cross_attn_norm=cross_attn_norm, qk_norm="rms_norm_across_heads", eps=1e-6)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.to(dtype) if dtype is not None else model


def save_tiny_wan_transformer(path: str | os.PathLike, **kwargs) -> str:
    """:func:`tiny_wan_transformer` saved with ``save_pretrained``: the folder loads as a hub id would."""
    tiny_wan_transformer(**kwargs).save_pretrained(Path(path))
    return str(path)


def save_tiny_wan_pipeline(path: str | os.PathLike, seed: int = 0, **transformer) -> str:
    """A whole tiny Wan 2.1 T2V pipeline repo in diffusers layout (``model_index.json``, ``transformer/``,
    ``text_encoder/`` umT5, ``tokenizer/``, ``vae/`` AutoencoderKLWan, ``scheduler/``): what
    ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` holds, at toy size; ``WanPipeline.from_pretrained`` loads and runs it."""
    import tempfile

    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline
    from transformers import UMT5EncoderModel

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        enc = save_tiny_umt5(Path(tmp) / "te", hidden=transformer.get("text_dim", 32), seed=seed)
        vae = save_tiny_vae(Path(tmp) / "vae", kind="wan", seed=seed)
        pipe = WanPipeline(tokenizer=tiny_umt5_tokenizer(), text_encoder=UMT5EncoderModel.from_pretrained(enc),
                           vae=AutoencoderKLWan.from_pretrained(vae),
                           scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                           transformer=tiny_wan_transformer(seed=seed, **transformer))
        pipe.save_pretrained(path)
    return str(path)
