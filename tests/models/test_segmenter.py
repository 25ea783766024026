"""Segmenter: a seeded tiny CLIPSeg built in code, saved and read back through the real loader."""

import json
import time
from contextlib import contextmanager

import pytest
import torch

from dxray.models.segmenter import (
    CLIP_MEAN,
    Segmentation,
    Segmenter,
    SegmenterLoadError,
    load_segmenter,
    presence_from_masks,
)

IMAGE_SIZE = 32  # the tiny vision tower's native size: a 4x4 grid of 8 px patches


def tiny_clipseg(tokenizer, seed: int = 0):
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    torch.manual_seed(seed)
    config = CLIPSegConfig(
        text_config=dict(
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            vocab_size=len(tokenizer),
            max_position_embeddings=16,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=16,
            # CLIPSeg reads hidden_states[i + 1] for i in extract_layers: every i < layers.
            num_hidden_layers=3,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=IMAGE_SIZE,
            patch_size=8,
        ),
        projection_dim=16,
        reduce_dim=8,
        extract_layers=[1, 2],
        decoder_num_attention_heads=2,
        decoder_intermediate_size=16,
    )
    return CLIPSegForImageSegmentation(config).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def segmenter(tiny_tokenizer):
    return Segmenter(tiny_clipseg(tiny_tokenizer), tiny_tokenizer, image_size=IMAGE_SIZE)


def images(batch: int, height: int = IMAGE_SIZE, width: int = IMAGE_SIZE, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator)


@pytest.mark.parametrize("size", [(32, 32), (24, 40), (64, 48)])
def test_masks_come_back_at_the_input_size(segmenter, size):
    with torch.no_grad():
        out = segmenter.segment(images(2, *size), ["a red circle", "water"])
    assert isinstance(out, Segmentation)
    assert out.masks.shape == (2, *size)
    assert out.presence.shape == (2,)
    assert out.masks.min() >= 0 and out.masks.max() <= 1
    assert torch.isfinite(out.presence).all()


def test_one_query_is_broadcast_to_every_image(segmenter):
    x = images(3)
    with torch.no_grad():
        one = segmenter.segment(x, ["water"])
        many = segmenter.segment(x, ["water"] * 3)
    torch.testing.assert_close(one.masks, many.masks, atol=1e-6, rtol=0)
    torch.testing.assert_close(one.presence, many.presence, atol=1e-6, rtol=0)


def test_each_image_is_segmented_with_its_own_query(segmenter):
    x = images(1).expand(2, -1, -1, -1)
    with torch.no_grad():
        out = segmenter.segment(x, ["water", "a red circle"])
    assert (out.masks[0] - out.masks[1]).abs().max() > 1e-4


@pytest.mark.parametrize("n_queries", [2, 4])
def test_wrong_number_of_queries_is_an_error(segmenter, n_queries):
    with pytest.raises(ValueError, match="one query per image"):
        segmenter.segment(images(3), ["water"] * n_queries)


def test_images_must_be_rgb_batches(segmenter):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        segmenter.segment(torch.rand(3, IMAGE_SIZE, IMAGE_SIZE), ["water"])


def test_probe_scores_every_query_on_every_image(segmenter):
    x = images(3, 40, 40)
    queries = ["water", "a watermark", "a blue star"]
    with torch.no_grad():
        scores = segmenter.probe(x, queries)
        expected = [segmenter.segment(x, [q]).presence for q in queries]
    assert scores.shape == (3, 3)
    torch.testing.assert_close(scores, torch.stack(expected, dim=1), atol=1e-6, rtol=0)


@contextmanager
def image_encodings(segmenter):
    """Records the batch size of every pass of the segmenter's vision tower."""
    calls = []
    hook = segmenter.model.clip.vision_model.register_forward_hook(
        lambda module, args, kwargs, out: calls.append(kwargs["pixel_values"].shape[0]),
        with_kwargs=True,
    )
    try:
        yield calls
    finally:
        hook.remove()


def test_probe_encodes_each_image_once(segmenter):
    with image_encodings(segmenter) as calls, torch.no_grad():
        segmenter.probe(images(2), ["water", "sand", "grass", "snow"])
    assert calls == [2]


def test_segment_is_differentiable_with_respect_to_the_pixels(segmenter):
    # CLIPSeg's own forward runs its vision tower under no_grad; the segmenter must not.
    x = images(2, 24, 24).requires_grad_(True)
    segmenter.segment(x, ["water"]).presence.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_preprocess_normalises_with_mean_and_std(segmenter):
    x = images(2)
    mean = torch.tensor(segmenter.mean).view(1, 3, 1, 1)
    std = torch.tensor(segmenter.std).view(1, 3, 1, 1)
    torch.testing.assert_close(segmenter.preprocess(x), (x - mean) / std)


def test_preprocess_downsizing_averages_instead_of_aliasing(segmenter):
    # Uniform noise has std 0.29; picking every 4th pixel keeps it, plain bilinear halves it,
    # an antialiased resize (like the reference PIL resize) averages it far down.
    x = images(1, 4 * IMAGE_SIZE, 4 * IMAGE_SIZE)
    std = torch.tensor(segmenter.std).view(1, 3, 1, 1)
    resized = segmenter.preprocess(x) * std
    assert resized.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert resized.std() < 0.08


def test_presence_is_a_robust_max():
    masks = torch.zeros(2, 64, 64)
    masks[0, 10, 10] = 1.0  # one stray confident pixel
    masks[1, 20:30, 20:30] = 1.0  # a 100-pixel object, more than 2% of 4,096 pixels
    presence = presence_from_masks(masks, top_fraction=0.02)
    k = 82  # ceil(0.02 * 4096)
    torch.testing.assert_close(presence, torch.tensor([1 / k, 1.0]))
    assert masks.flatten(1).max(dim=1).values[0] == 1.0  # a plain max would call both present


def test_presence_top_fraction_one_is_the_mean():
    masks = torch.rand(3, 8, 5)
    torch.testing.assert_close(presence_from_masks(masks, 1.0), masks.mean(dim=(1, 2)))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_presence_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="top_fraction"):
        presence_from_masks(torch.rand(1, 4, 4), fraction)


def test_image_size_must_be_a_multiple_of_the_patch_size(tiny_tokenizer):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        Segmenter(tiny_clipseg(tiny_tokenizer), tiny_tokenizer, image_size=36)


def test_save_and_load_round_trip(tiny_tokenizer, tmp_path):
    original = Segmenter(
        tiny_clipseg(tiny_tokenizer, seed=3),
        tiny_tokenizer,
        image_size=16,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.3, 0.25),
        presence_top_fraction=0.05,
    )
    original.save_pretrained(tmp_path / "seg")
    loaded = load_segmenter(tmp_path / "seg")
    assert (loaded.image_size, loaded.presence_top_fraction) == (16, 0.05)
    assert loaded.mean == (0.5, 0.4, 0.3) and loaded.std == (0.2, 0.3, 0.25)
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert not loaded.model.training
    x = images(2, 20, 28)
    with torch.no_grad():
        a = original.segment(x, ["a red circle", "water"])
        b = loaded.segment(x, ["a red circle", "water"])
    torch.testing.assert_close(a.masks, b.masks, atol=1e-6, rtol=0)
    torch.testing.assert_close(a.presence, b.presence, atol=1e-6, rtol=0)


def test_preprocessor_config_wins_and_overrides_win_over_it(segmenter, tmp_path):
    path = segmenter.save_pretrained(tmp_path / "seg")
    processor = {
        "size": {"height": 64, "width": 64},
        "image_mean": [0.5] * 3,
        "image_std": [0.25] * 3,
    }
    (path / "preprocessor_config.json").write_text(json.dumps(processor))
    loaded = load_segmenter(path)
    assert (loaded.image_size, loaded.mean, loaded.std) == (64, (0.5,) * 3, (0.25,) * 3)
    loaded = load_segmenter(path, image_size=24, presence_top_fraction=0.1)
    assert (loaded.image_size, loaded.presence_top_fraction) == (24, 0.1)


def test_defaults_without_settings_files(segmenter, tmp_path):
    path = segmenter.save_pretrained(tmp_path / "seg")
    (path / "dxray_segmenter.json").unlink()
    loaded = load_segmenter(path, image_size=IMAGE_SIZE)
    assert loaded.mean == CLIP_MEAN and loaded.presence_top_fraction == 0.02
    assert load_segmenter(path).image_size == 352


def test_missing_directory_is_a_load_error(tmp_path):
    with pytest.raises(SegmenterLoadError, match="does not exist"):
        load_segmenter(tmp_path / "nowhere")


def test_directory_without_a_model_is_a_load_error(tmp_path):
    with pytest.raises(SegmenterLoadError, match="config.json"):
        load_segmenter(tmp_path)


def test_uncached_hub_id_offline_fails_fast_and_says_what_to_do():
    start = time.monotonic()
    with pytest.raises(SegmenterLoadError) as err:
        load_segmenter("dxray-test/no-such-clipseg")
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "dxray-test/no-such-clipseg" in message
    assert "connected machine" in message and "DIR" in message


def test_union_mask_is_the_pixelwise_max_of_the_queries_masks_from_one_encoding(segmenter):
    x = images(2, 40, 40)
    queries = ["water", "a red circle"]
    with image_encodings(segmenter) as calls, torch.no_grad():
        union = segmenter.union_mask(x, queries)
    assert calls == [2]
    with torch.no_grad():
        each = torch.stack([segmenter.segment(x, [q]).masks for q in queries])
    torch.testing.assert_close(union, each.amax(0), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="at least one query"):
        segmenter.union_mask(x, [])
