"""The toy segmenter itself: a random-weight CLIPSeg sized by a config (`build_toy_segmenter`), and
its mask logits for (scene, query) pairs along `Segmenter.segment`'s own path (`pair_logits`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dxray.models.build import build_tokenizer
from dxray.models.segmenter import Segmenter
from dxray.toyworld.scenes import caption_words
from dxray.toyworld.segmenter_training.config import ToySegmenterConfig
from dxray.toyworld.world import World

QUERY_WORDS = ("a", "an")  # articles of the query templates, beside the caption words


def build_toy_segmenter(world: World, config: ToySegmenterConfig, *, seed: int = 0) -> Segmenter:
    """A random-weight CLIPSeg sized by `config`, with a tokenizer for the world's words."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    tokenizer = build_tokenizer(
        caption_words(world) + list(QUERY_WORDS), max_length=config.max_length
    )
    c = config
    model_config = CLIPSegConfig(
        text_config=dict(
            hidden_size=c.text_hidden,
            num_hidden_layers=c.text_layers,
            num_attention_heads=c.text_heads,
            intermediate_size=c.mlp_ratio * c.text_hidden,
            vocab_size=len(tokenizer),
            max_position_embeddings=c.max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=c.vision_hidden,
            num_hidden_layers=c.vision_layers,
            num_attention_heads=c.vision_heads,
            intermediate_size=c.mlp_ratio * c.vision_hidden,
            image_size=c.image_size,
            patch_size=c.patch_size,
        ),
        projection_dim=c.projection_dim,
        reduce_dim=c.reduce_dim,
        extract_layers=list(c.extract_layers),
        decoder_num_attention_heads=c.decoder_heads,
        decoder_intermediate_size=c.mlp_ratio * c.reduce_dim,
        # The "complex" head upsamples by (patch // 4)^2, which is 1 for a 4 px patch.
        use_complex_transposed_convolution=False,
    )
    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(model_config)
    _init_decoder(model.decoder)
    return Segmenter(
        model,
        tokenizer,
        image_size=c.image_size,
        presence_top_fraction=c.presence_top_fraction,
        source="dxray.toyworld.segmenter_training",
    )


def _init_decoder(decoder) -> None:
    """Start the decoder where vision reaches the mask at full strength.

    transformers initialises CLIPSeg's decoder Linears with std 0.02 (fine beside a pretrained,
    frozen CLIP): the FiLM gain then starts near 0, scaling the image features away before the
    first decoder layer, and from scratch the model idles for hundreds of steps. FiLM starts as
    the identity (gain 1, shift 0, each nudged by the text) and the reductions as Xavier.
    """
    with torch.no_grad():
        for reduce in decoder.reduces:
            torch.nn.init.xavier_uniform_(reduce.weight)
        decoder.film_mul.bias.fill_(1.0)
        decoder.film_add.bias.zero_()


def pair_logits(
    segmenter: Segmenter, images: Tensor, queries: Sequence[str], scene_index: Tensor
) -> Tensor:
    """Mask logits [P, H, W] of pair p = (images[scene_index[p]], queries[p]).

    `Segmenter.segment`'s own path (its image and query encoders, the decoder, the same resize)
    stopped before the sigmoid, so the loss is a stable BCE-with-logits; and each scene is
    encoded once however many queries ask about it.
    `sigmoid(pair_logits(s, x, qs, i)) == s.segment(x[i], qs).masks`, which a test holds.
    """
    activations = segmenter._encode_images(images)
    distinct = {q: i for i, q in enumerate(dict.fromkeys(queries))}
    text = segmenter._encode_queries(list(distinct))
    rows = torch.tensor([distinct[q] for q in queries], device=text.device)
    index = scene_index.to(activations[0].device)
    logits = segmenter.model.decoder([a[index] for a in activations], text[rows]).logits
    logits = logits.reshape(len(queries), 1, *logits.shape[-2:]).float()
    size = tuple(images.shape[-2:])
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(
            logits, size=size, mode="bilinear", align_corners=False, antialias=True
        )
    return logits[:, 0]
