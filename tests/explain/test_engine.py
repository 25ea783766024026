"""The optimisation loop: objectives rise, rows are independent, rows stop on their own."""

import pytest
import torch

from dxray.explain.objective import CentredLogit, ClassCE, ClassLogit, Objective, Unit
from dxray.explain.optimize import ExplainConfig, explain
from dxray.explain.sampler import SamplerConfig

FAST = ExplainConfig(iterations=4, stop_prob=None, sampler=SamplerConfig(steps=2))


def test_objective_rises_for_class_and_unit(tiny_generator, tiny_classifier):
    objectives = [ClassLogit(0), ClassCE(2), Unit("features.conv2", 5)]
    cfg = ExplainConfig(iterations=25, lr=0.2, stop_prob=None, sampler=SamplerConfig(steps=2))
    result = explain(tiny_generator, tiny_classifier, objectives, [0, 1, 2], cfg)
    for row in result.history["objective"]:
        assert len(row) == 25
        # A random tiny generator responds weakly to its prompt, so the rise is small (and Adam
        # may overshoot a little); a sign error or a broken gradient path fails this.
        second_half = row[len(row) // 2 :]
        assert row[-1] > row[0] and min(second_half) > row[0], row
    assert result.status == ["max_iterations"] * 3
    assert result.images.shape == (3, 3, 16, 16)
    assert result.vectors.shape == (3, 4, 16)


def test_batched_rows_equal_rows_alone(tiny_models64):
    gen, clf = tiny_models64
    objectives = [ClassLogit(0), ClassLogit(1), Unit("features.conv1", 3)]
    seeds = [3, 4, 5]
    batched = explain(gen, clf, objectives, seeds, FAST)
    for i in range(3):
        alone = explain(gen, clf, [objectives[i]], [seeds[i]], FAST)
        # Float64 models: only summation order differs between batch sizes.
        torch.testing.assert_close(batched.vectors[i], alone.vectors[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(batched.images[i], alone.images[0], atol=1e-6, rtol=1e-6)
        assert batched.history["objective"][i] == pytest.approx(
            alone.history["objective"][0], abs=1e-9
        )


def test_each_row_draws_from_its_own_seed(tiny_models64):
    # One objective, two seeds, one batch: the rows differ, and each equals its seed alone.
    # (An engine that ignored the rows' seeds would give two equal rows, and the test above,
    # whose rows all differ by objective, would not notice.)
    gen, clf = tiny_models64
    batched = explain(gen, clf, [ClassLogit(0), ClassLogit(0)], [3, 4], FAST)
    assert (batched.vectors[0] - batched.vectors[1]).abs().max() > 1e-3
    assert (batched.images[0] - batched.images[1]).abs().max() > 1e-3
    for i, seed in enumerate([3, 4]):
        alone = explain(gen, clf, [ClassLogit(0)], [seed], FAST)
        torch.testing.assert_close(batched.vectors[i], alone.vectors[0], atol=1e-6, rtol=1e-6)


class NaNGradientAfter(Objective):
    """ClassLogit(0) whose value stays finite but whose gradient turns NaN after `calls`
    evaluations (the unselected branch of a `where` still carries its NaN derivative)."""

    def __init__(self, calls: int):
        self.calls = calls

    def __call__(self, out):
        self.calls -= 1
        value = out.logits[:, 0]
        if self.calls >= 0:
            return value
        nan_slope = torch.sqrt(value - value - 1.0)  # NaN, and so is its derivative
        return torch.where(torch.ones_like(value, dtype=torch.bool), value, nan_slope)


def test_a_row_whose_gradient_turns_non_finite_stops_and_others_go_on(tiny_models64):
    gen, clf = tiny_models64
    cfg = ExplainConfig(iterations=5, stop_prob=None, sampler=SamplerConfig(steps=2))
    result = explain(gen, clf, [ClassLogit(1), NaNGradientAfter(2)], [0, 1], cfg)
    assert result.status == ["max_iterations", "nan"]
    assert result.errors[1] == "non-finite gradient at iteration 2; row stopped"
    assert torch.isfinite(result.vectors).all()  # the NaN step was never taken
    alone = explain(gen, clf, [ClassLogit(1)], [0], cfg)
    torch.testing.assert_close(result.vectors[0], alone.vectors[0], atol=1e-6, rtol=1e-6)


class NaNAfter(Objective):
    """ClassLogit(0) that turns NaN after `calls` evaluations: a row that diverges."""

    def __init__(self, calls: int):
        self.calls = calls

    def __call__(self, out):
        self.calls -= 1
        value = out.logits[:, 0]
        return value if self.calls >= 0 else value * float("nan")


def test_nan_row_stops_and_others_go_on_unchanged(tiny_models64):
    gen, clf = tiny_models64
    cfg = ExplainConfig(iterations=5, stop_prob=None, sampler=SamplerConfig(steps=2))
    objectives = [ClassLogit(1), NaNAfter(2), ClassLogit(2)]
    result = explain(gen, clf, objectives, [0, 1, 2], cfg)
    assert result.status == ["max_iterations", "nan", "max_iterations"]
    assert result.steps.tolist() == [5, 3, 5]
    assert "non-finite objective at iteration 2" in result.errors[1]
    assert result.errors[0] is None and result.errors[2] is None
    assert torch.isfinite(result.vectors).all()
    # The row that left the batch did not disturb the others (the batch was compacted).
    alone = explain(gen, clf, [ClassLogit(2)], [2], cfg)
    torch.testing.assert_close(result.vectors[2], alone.vectors[0], atol=1e-6, rtol=1e-6)


def test_early_stop_after_patience(tiny_generator, tiny_classifier):
    # Any probability >= 0 counts as a hit: every row converges after exactly `patience` steps.
    cfg = ExplainConfig(
        iterations=20, stop_prob=0.0, stop_patience=3, sampler=SamplerConfig(steps=1)
    )
    objectives = [ClassLogit(0), Unit("features.conv1", 0)]
    result = explain(tiny_generator, tiny_classifier, objectives, [0, 1], cfg)
    assert result.status[0] == "converged" and result.steps[0] == 3
    # A unit objective has no target class: no probability, no early stop.
    assert result.status[1] == "max_iterations" and result.steps[1] == 20
    assert torch.isnan(result.probability[1]) and 0 <= result.probability[0] <= 1
    assert result.converged.tolist() == [True, False]


def test_stopped_row_keeps_the_vectors_that_met_the_criterion(tiny_generator, tiny_classifier):
    stop = ExplainConfig(
        iterations=10, stop_prob=0.0, stop_patience=2, sampler=SamplerConfig(steps=1)
    )
    run2 = ExplainConfig(iterations=2, stop_prob=None, sampler=SamplerConfig(steps=1))
    stopped = explain(tiny_generator, tiny_classifier, [ClassLogit(0)], [7], stop)
    # Evaluated at iterations 0 and 1, then kept: the vectors after exactly one update.
    one_update = explain(
        tiny_generator,
        tiny_classifier,
        [ClassLogit(0)],
        [7],
        ExplainConfig(iterations=1, stop_prob=None, sampler=SamplerConfig(steps=1)),
    )
    two_updates = explain(tiny_generator, tiny_classifier, [ClassLogit(0)], [7], run2)
    torch.testing.assert_close(stopped.vectors, one_update.vectors)
    assert not torch.allclose(stopped.vectors, two_updates.vectors)


def test_hard_prompt_forward_uses_real_tokens(tiny_generator, tiny_classifier):
    cfg = ExplainConfig(
        iterations=3, hard_prompt=True, stop_prob=None, sampler=SamplerConfig(steps=1)
    )
    result = explain(tiny_generator, tiny_classifier, [ClassLogit(0)], [0], cfg)
    assert len(result.words[0]) == 4 and all(len(w) == 3 for w in result.words[0])
    assert all(isinstance(word, str) and word for vec in result.words[0] for word, _ in vec)


def test_words_init_starts_from_the_word(tiny_generator, tiny_classifier):
    cfg = ExplainConfig(
        iterations=1,
        lr=1e-6,
        init="words",
        init_words=("circle", "water"),
        stop_prob=None,
        sampler=SamplerConfig(steps=1),
    )
    result = explain(tiny_generator, tiny_classifier, [ClassLogit(0)], [0], cfg)
    assert [vec[0][0] for vec in result.words[0]] == ["circle", "water", "circle", "water"]


def test_bad_inputs(tiny_generator, tiny_classifier):
    with pytest.raises(ValueError, match="one seed per objective"):
        explain(tiny_generator, tiny_classifier, [ClassLogit(0)], [0, 1], FAST)
    with pytest.raises(ValueError, match="exactly one"):
        explain(
            tiny_generator, tiny_classifier, [ClassLogit(0)], [0], ExplainConfig(template="a photo")
        )
    with pytest.raises(ValueError, match="iterations"):
        explain(tiny_generator, tiny_classifier, [ClassLogit(0)], [0], ExplainConfig(iterations=0))
    with pytest.raises(ValueError, match=r"class index 7 out of range.*3 classes"):
        explain(tiny_generator, tiny_classifier, [ClassLogit(0) + ClassCE(7)], [0], FAST)
    with pytest.raises(KeyError, match="unknown layer 'features.conv9'.*features.conv1"):
        explain(tiny_generator, tiny_classifier, [Unit("features.conv9", 0)], [0], FAST)
    with pytest.raises(ValueError, match="channel 8 out of range"):
        explain(tiny_generator, tiny_classifier, [-Unit("features.conv1", 8)], [0], FAST)
    with pytest.raises(ValueError, match="needs .* tokens"):
        explain(tiny_generator, tiny_classifier, [ClassLogit(0)], [0], ExplainConfig(n_vectors=40))


def test_objectives_compose():
    from dxray.models.outputs import ClassifierOutput

    out = ClassifierOutput(
        logits=torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]]),
        units={"l": torch.tensor([[10.0, 20.0], [30.0, 40.0]])},
    )
    combo = ClassLogit(1) + 0.5 * Unit("l", 1) - ClassLogit(0)
    assert combo(out).tolist() == [11.0, 19.0]
    assert (-ClassLogit(2))(out).tolist() == [-3.0, -4.0]
    assert combo.layers() == {"l"}
    # Maximising one class while pushing another down still targets the first...
    assert combo.target_class == 1
    # ...but two classes pulled up together name no single target.
    assert (ClassLogit(0) + ClassLogit(1)).target_class is None
    assert (ClassLogit(1) + 0.5 * Unit("l", 1)).target_class == 1
    assert (-ClassLogit(1)).target_class is None
    log_p = torch.log_softmax(out.logits, -1)[:, 2]
    torch.testing.assert_close(ClassCE(2)(out), log_p)
    with pytest.raises(TypeError):
        ClassLogit(0) + "x"


def test_norm_regulariser_keeps_vectors_near_token_norms(tiny_generator, tiny_classifier):
    from dxray.explain.prompt import token_embeddings

    typical = token_embeddings(tiny_generator.text_encoder).norm(dim=-1).mean()
    base = dict(iterations=15, lr=0.5, stop_prob=None, sampler=SamplerConfig(steps=1))
    free = explain(tiny_generator, tiny_classifier, [ClassLogit(0)], [0], ExplainConfig(**base))
    held = explain(
        tiny_generator,
        tiny_classifier,
        [ClassLogit(0)],
        [0],
        ExplainConfig(**base, norm_weight=50.0),
    )

    def off(result):
        return (result.vectors.norm(dim=-1) / typical - 1).abs().mean()

    assert off(held) < 0.5 * off(free)


class _Confident:
    """Wraps a classifier: class 0 gets a huge logit unless the image is all black."""

    def __init__(self, inner):
        self.inner = inner

    def outputs(self, images, layers=()):
        out = self.inner.outputs(images, layers)
        black = images.flatten(1).abs().amax(1) == 0
        boost = torch.where(black, -50.0, 50.0).to(out.logits.dtype)
        out.logits = (
            out.logits
            + torch.nn.functional.one_hot(
                torch.zeros(len(images), dtype=torch.long), out.logits.shape[1]
            )
            * boost[:, None]
        )
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_early_stop_is_confirmed_on_the_full_vae_image(
    tiny_generator, tiny_classifier, monkeypatch
):
    import dxray.explain.optimize as opt

    cfg = ExplainConfig(
        iterations=6, stop_prob=0.9, stop_patience=2, sampler=SamplerConfig(steps=1)
    )
    clf = _Confident(tiny_classifier)
    agreed = explain(tiny_generator, clf, [ClassLogit(0)], [0], cfg)
    assert agreed.status == ["converged"] and agreed.steps.tolist() == [2]
    # Now the full VAE renders black (the tiny decoder still says "class 0, p ~ 1"): the row
    # must not stop on the tiny decoder's word.
    real_decode = opt.decode

    def black_vae(generator, latents, *, tiny=False, **kw):
        images = real_decode(generator, latents, tiny=tiny, **kw)
        return images if tiny else torch.zeros_like(images)

    monkeypatch.setattr(opt, "decode", black_vae)
    disagreed = explain(tiny_generator, clf, [ClassLogit(0)], [0], cfg)
    assert disagreed.status == ["max_iterations"] and disagreed.steps.tolist() == [6]
    assert disagreed.history["probability"][0][-1] > 0.9  # the tiny decoder kept saying yes


def test_the_classifier_sees_the_transformed_images_and_the_result_holds_the_renders(
    tiny_generator, tiny_classifier
):
    """A transform that blanks the left half: the classifier only ever sees blanked images
    (its objective is that of the blanked image), the result keeps the real renders."""
    seen = []

    def blank_left(images):
        seen.append(images.shape[0])
        out = images.clone()
        out[..., : images.shape[-1] // 2] = 0.0
        return out

    config = ExplainConfig(iterations=3, template="a {}", sampler=SamplerConfig(steps=1),
                           stop_prob=None)  # fmt: skip
    result = explain(
        tiny_generator, tiny_classifier, [CentredLogit(1)], [0], config, transform=blank_left
    )
    assert len(seen) == 3 + 1  # every iteration and the final scoring
    assert float(result.images[..., : result.images.shape[-1] // 2].abs().sum()) > 0
    with torch.no_grad():
        logits = tiny_classifier.outputs(blank_left(result.images)).logits
    expected = logits[0, 1] - logits[0].mean()
    assert float(result.objective[0]) == pytest.approx(float(expected), abs=1e-4)


def test_centred_logit_ignores_what_every_class_gets():
    from dxray.models.outputs import ClassifierOutput

    logits = torch.tensor([[1.0, 4.0, 1.0], [11.0, 14.0, 11.0]])
    values = CentredLogit(1)(ClassifierOutput(logits))
    assert torch.allclose(values, torch.tensor([2.0, 2.0]))
    assert CentredLogit(1).target_class == 1 and repr(CentredLogit(1)) == "CentredLogit(1)"
