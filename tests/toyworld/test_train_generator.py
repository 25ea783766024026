"""The toy generator trainer: plumbing, resume, latent scaling, and that the VAE stage learns.

Quality (can an oracle recognise shapes?) needs minutes on a GPU and is checked by the gates,
not here; these tests train deliberately tiny models for a few steps.
"""

import json
from dataclasses import replace

import pytest
import torch

from dxray.models.build import build_tokenizer
from dxray.models.generator import load_generator
from dxray.toyworld.generator_training.checkpoints import CHECKPOINT
from dxray.toyworld.generator_training.config import GeneratorTrainingConfig, ToyGeneratorConfig
from dxray.toyworld.generator_training.loop import train_generator
from dxray.toyworld.generator_training.losses import few_step_timesteps, min_snr_weights
from dxray.toyworld.generator_training.samples import sample_captions
from dxray.toyworld.run_settings import RunSettings
from dxray.toyworld.scenes import caption_words

POOL = 64  # scenes rendered per run: enough for plumbing, fast


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    lines = []
    training = GeneratorTrainingConfig(
        ToyGeneratorConfig.tiny(), max_steps=4, batch_size=8, pool_size=POOL, log_every=2
    )
    report = train_generator(world, out, training, RunSettings(progress=lines.append))
    return report, lines


def _checkpoint(out_dir):
    return torch.load(out_dir / CHECKPOINT, map_location="cpu", weights_only=True)


def test_trained_generator_loads_and_samples(trained):
    report, lines = trained
    assert report.steps == {"vae": 3, "tiny_decoder": 3, "unet": 4}
    assert report.stage == "unet"
    gen = load_generator(report.generator_dir)
    assert type(gen.scheduler).__name__ == "DDIMScheduler"
    assert gen.scheduler.config.prediction_type == "v_prediction"
    assert gen.scheduler.config.timestep_spacing == "trailing"
    assert gen.unet.config.time_cond_proj_dim is None
    assert gen.latent_shape == (4, 16, 16)  # x2 downsampling of 32 px scenes
    assert gen.tiny_decoder is not None
    images = sample_captions(
        gen, ["a red circle on water", "grass"], seeds=[0, 1], steps=2, guidance_scale=2.0
    )
    assert images.shape == (2, 3, 32, 32)
    assert images.min() >= 0.0 and images.max() <= 1.0
    tiny = sample_captions(gen, ["a red circle on water"], seeds=[0], steps=1, tiny=True)
    assert tiny.shape == (1, 3, 32, 32)
    # the same seed gives the same image, another seed another one
    again = sample_captions(gen, ["a red circle on water", "a red circle on water"], seeds=[0, 5])
    first = sample_captions(gen, ["a red circle on water"], seeds=[0])
    torch.testing.assert_close(again[0], first[0])
    assert not torch.allclose(again[0], again[1])

    info = json.loads((report.generator_dir / "dxray_train.json").read_text())
    assert info["seed"] == 0 and info["world"]["name"] == "default"
    assert info["steps"] == report.steps
    assert info["arch"]["unet_channels"] == list(ToyGeneratorConfig.tiny().unet_channels)
    assert set(info["versions"]) >= {"torch", "diffusers", "transformers"}
    assert any(line.startswith("[unet] step") and "steps/s" in line for line in lines)


def test_exported_weights_are_the_ema(trained):
    report, _ = trained
    ckpt = _checkpoint(report.out_dir)
    gen = load_generator(report.generator_dir)
    name = "conv_in.weight"
    torch.testing.assert_close(gen.unet.state_dict()[name], ckpt["ema"][f"unet.{name}"])
    # after a few steps the EMA lags the live weights
    assert not torch.allclose(ckpt["ema"][f"unet.{name}"], ckpt["models"]["unet"][name])


def test_latent_scaling_factor_is_measured(trained, world):
    from dxray.toyworld.data import sample_specs
    from dxray.toyworld.scenes import render_batch

    report, _ = trained
    gen = load_generator(report.generator_dir)
    scale = gen.vae.config.scaling_factor
    assert scale == pytest.approx(report.scaling_factor)
    assert scale != pytest.approx(0.18215)
    images, _, _ = render_batch(world, sample_specs(world, 64, seed=123, mode="unbiased"))
    with torch.no_grad():
        latents = gen.vae.encode(images * 2 - 1).latent_dist.mean * scale
    assert latents.std().item() == pytest.approx(1.0, abs=0.25)


def test_resume_continues_where_it_stopped(world, tmp_path):
    config = ToyGeneratorConfig.tiny()
    # one tokenizer for both runs: build_tokenizer's ids differ from call to call
    tokenizer = build_tokenizer(caption_words(world), max_length=config.max_length)

    def steps(n):
        return GeneratorTrainingConfig(
            config, max_steps=n, batch_size=8, pool_size=POOL, log_every=1
        )

    first = train_generator(world, tmp_path / "a", steps(3), tokenizer=tokenizer)
    assert first.steps["unet"] == 3 and not first.resumed
    after_3 = _checkpoint(tmp_path / "a")

    second = train_generator(world, tmp_path / "a", steps(6))
    assert second.resumed
    after_6 = _checkpoint(tmp_path / "a")
    assert after_6["steps"] == {"vae": 3, "tiny_decoder": 3, "unet": 6}
    assert [s for s, _ in second.losses["unet"]] == [1, 2, 3, 4, 5, 6]
    # finished stages stay frozen
    for name, tensor in after_3["models"]["vae"].items():
        torch.testing.assert_close(after_6["models"]["vae"][name], tensor)

    # continuing = never having stopped: same weights as one uninterrupted run to 6 steps
    straight = train_generator(world, tmp_path / "b", steps(6), tokenizer=tokenizer)
    whole = _checkpoint(tmp_path / "b")
    straight_losses = [loss for _, loss in straight.losses["unet"]]
    assert straight_losses == pytest.approx([loss for _, loss in second.losses["unet"]], rel=1e-4)
    for name, tensor in whole["models"]["unet"].items():
        torch.testing.assert_close(after_6["models"]["unet"][name], tensor, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after_6["ema"], whole["ema"], rtol=1e-4, atol=1e-5)
    # ... and not what training from fresh weights gives
    w = "conv_in.weight"
    assert not torch.allclose(after_3["models"]["unet"][w], after_6["models"]["unet"][w])


def test_resume_from_the_exported_generator_alone(world, tmp_path):
    # A GPU machine returns the export (small), not checkpoint.pt (weights + Adam + EMA).
    kwargs = dict(batch_size=8, pool_size=POOL)
    first = train_generator(
        world, tmp_path, GeneratorTrainingConfig(ToyGeneratorConfig.tiny(), max_steps=3, **kwargs)
    )
    exported = load_generator(first.generator_dir)
    (tmp_path / CHECKPOINT).unlink()
    second = train_generator(
        world, tmp_path, GeneratorTrainingConfig(ToyGeneratorConfig.tiny(), max_steps=5, **kwargs)
    )
    assert second.resumed and second.steps == {"vae": 3, "tiny_decoder": 3, "unet": 5}
    assert second.scaling_factor == pytest.approx(first.scaling_factor)
    vae = _checkpoint(tmp_path)["models"]["vae"]
    for name, tensor in exported.vae.state_dict().items():
        torch.testing.assert_close(vae[name], tensor)


def test_resume_refuses_another_config(world, tmp_path):
    kwargs = dict(batch_size=8, pool_size=POOL, max_steps=1)
    train_generator(world, tmp_path, GeneratorTrainingConfig(ToyGeneratorConfig.tiny(), **kwargs))
    other = replace(ToyGeneratorConfig.tiny(), text_layers=2)
    with pytest.raises(ValueError, match="text_layers"):
        train_generator(world, tmp_path, GeneratorTrainingConfig(other, **kwargs))
    afresh = GeneratorTrainingConfig(other, resume=False, **kwargs)
    train_generator(world, tmp_path, afresh)  # afresh: fine


def test_vae_loss_goes_down(world, tmp_path):
    config = replace(ToyGeneratorConfig.tiny(), vae_steps=40, tiny_decoder_steps=0, vae_lr=3e-3)
    # pool = batch: the VAE sees (nearly) one fixed batch of 16 scenes, over and over
    training = GeneratorTrainingConfig(
        config, max_steps=0, batch_size=16, pool_size=16, log_every=1
    )
    report = train_generator(world, tmp_path, training)
    losses = [loss for _, loss in report.losses["vae"]]
    assert len(losses) == 40
    start, end = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert end < 0.7 * start, (start, end)


def test_seconds_zero_exports_without_training(world, tmp_path):
    training = GeneratorTrainingConfig(
        ToyGeneratorConfig.tiny(), seconds=0, batch_size=8, pool_size=POOL
    )
    report = train_generator(world, tmp_path, training)
    # nothing trained, and the VAE stage stays open for the next session
    assert report.steps == {"vae": 0, "tiny_decoder": 0, "unet": 0}
    assert report.stage == "vae"
    assert (report.generator_dir / "model_index.json").is_file()


def test_min_snr_weights_keep_the_pure_noise_end():
    alphas = torch.tensor([0.9999, 0.5, 1e-9])  # SNR ~1e4, 1, ~0
    w = min_snr_weights(alphas, gamma=5.0, prediction_type="v_prediction")
    assert w[0] < 0.01  # easy, low-noise timesteps are down-weighted
    assert w[1] == pytest.approx(1.0) and w[2] == pytest.approx(1.0)


def test_few_step_timesteps_are_the_samplers():
    assert few_step_timesteps(1000) == [249, 332, 499, 666, 749, 999]
