"""The generator loader reads the save_pretrained layout that the builder writes."""

import json
import logging

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


@pytest.mark.parametrize(
    "saved", ["built", "zoo"], ids=["save_pretrained", "the committed toy zoo"]
)
def test_saved_configs_hold_only_what_the_models_take(tmp_path, saved):
    """diffusers 0.42's AutoencoderTiny records `block_out_channels` beside its arguments and
    warns on every load that the key is ignored (in every actor of an audit, before the fix):
    the generator's configs hold only their classes' __init__ arguments, and load silently."""
    import inspect
    from pathlib import Path

    from diffusers.utils import logging as diffusers_logging

    if saved == "built":
        root = tmp_path / "gen"
        build_generator(GeneratorArch(), seed=0).save_pretrained(root)
    else:
        root = Path(__file__).resolve().parents[2] / "dxray/toyworld/zoo/default/generator"
    classes = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL",
               "tiny_decoder": "AutoencoderTiny"}  # fmt: skip
    import diffusers

    for part, name in classes.items():
        config = json.loads((root / part / "config.json").read_text())
        takes = set(inspect.signature(getattr(diffusers, name).__init__).parameters)
        assert {k for k in config if not k.startswith("_")} <= takes, part
    warned = _Recorder()
    logger = diffusers_logging.get_logger("diffusers")
    logger.addHandler(warned)
    try:
        load_generator(root)
    finally:
        logger.removeHandler(warned)
    assert not [m for m in warned.messages if "were passed to" in m], warned.messages


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())
