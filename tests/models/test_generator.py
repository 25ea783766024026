"""The generator loader reads the save_pretrained layout that the builder writes."""

import json

import pytest
import torch

from dxray.explain.sampler import SamplerConfig, decode, draw_noise, sample
from dxray.models.build import GeneratorArch, build_generator
from dxray.models.generator import GeneratorLoadError, load_generator


def _render(gen):
    cond = torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(0))
    noise = draw_noise(gen.latent_shape, 2, [0])
    with torch.no_grad():
        z = sample(gen, cond, noise, SamplerConfig(steps=2))
        return decode(gen, z), decode(gen, z, tiny=True)


@pytest.mark.parametrize("scheduler", ["lcm", "ddim"])
def test_round_trip_save_pretrained(tmp_path, scheduler):
    gen = build_generator(GeneratorArch(scheduler=scheduler), seed=3)
    gen.save_pretrained(tmp_path / "gen")
    index = json.loads((tmp_path / "gen" / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    loaded = load_generator(tmp_path / "gen")
    assert type(loaded.scheduler) is type(gen.scheduler)
    assert (
        loaded.tokenizer("a red circle")["input_ids"] == gen.tokenizer("a red circle")["input_ids"]
    )
    for a, b in zip(_render(gen), _render(loaded), strict=True):
        torch.testing.assert_close(a, b)
    assert not any(p.requires_grad for m in loaded.modules() for p in m.parameters())


def test_tiny_decoder_from_separate_source(tmp_path):
    gen = build_generator(GeneratorArch(), seed=0)
    gen.save_pretrained(tmp_path / "gen")
    gen.tiny_decoder.save_pretrained(tmp_path / "taesd")
    (tmp_path / "gen" / "tiny_decoder").rename(tmp_path / "elsewhere")
    assert load_generator(tmp_path / "gen").tiny_decoder is None
    assert (
        load_generator(tmp_path / "gen", tiny_decoder=tmp_path / "taesd").tiny_decoder is not None
    )


def test_dtype_is_explicit(tmp_path):
    build_generator(GeneratorArch(), seed=0).save_pretrained(tmp_path / "gen")
    gen = load_generator(tmp_path / "gen", dtype=torch.float64)
    assert gen.dtype == torch.float64 and gen.text_encoder.dtype == torch.float64


def test_missing_component_folder_is_named(tmp_path):
    build_generator(GeneratorArch(), seed=0).save_pretrained(tmp_path / "gen")
    (tmp_path / "gen" / "unet").rename(tmp_path / "unet_moved")
    with pytest.raises(GeneratorLoadError, match=r"lacks the component folder\(s\) \['unet'\]"):
        load_generator(tmp_path / "gen")


def test_missing_directory(tmp_path):
    with pytest.raises(GeneratorLoadError, match="does not exist"):
        load_generator(tmp_path / "nope")


def test_offline_hub_id_says_what_to_do():
    # conftest sets HF_HUB_OFFLINE=1: this fails at once instead of retrying a network.
    with pytest.raises(GeneratorLoadError, match="hub id 'someone/not-cached'.*hf download"):
        load_generator("someone/not-cached")
