"""The toy segmenter trainer: its pairs, its loss, its saved model and its gates, on tiny sizes."""

import json
from dataclasses import replace

import pytest
import torch

from dxray.models.segmenter import load_segmenter
from dxray.toyworld.data import class_names, context_names, cue_names
from dxray.toyworld.gates import Gate
from dxray.toyworld.run_settings import RunSettings
from dxray.toyworld.scenes import render_batch
from dxray.toyworld.segmenter_training.checkpoints import TRAIN_FILE
from dxray.toyworld.segmenter_training.config import ToySegmenterConfig
from dxray.toyworld.segmenter_training.data import SegmenterBatch, sample_batch, sample_scenes
from dxray.toyworld.segmenter_training.gates import (
    mask_iou,
    presence_accuracy,
    presence_truth,
    segmenter_gates,
)
from dxray.toyworld.segmenter_training.loop import train_segmenter
from dxray.toyworld.segmenter_training.losses import segmentation_loss
from dxray.toyworld.segmenter_training.model import build_toy_segmenter, pair_logits

# A segmenter that trains a step in milliseconds: 16 px input, 4x4 grid, 16-wide everywhere.
TINY = dict(
    image_size=16,
    patch_size=4,
    vision_hidden=16,
    vision_layers=2,
    vision_heads=2,
    extract_layers=(0, 1),
    text_hidden=16,
    text_layers=1,
    text_heads=2,
    projection_dim=16,
    reduce_dim=16,
    decoder_heads=2,
    batch_size=4,
    warmup_steps=1,
    log_every=2,
)


@pytest.fixture(scope="module")
def tiny(world):
    return build_toy_segmenter(world, ToySegmenterConfig(**TINY), seed=0)


def named(world, query):
    """What a query names, read from its words: {"object": "circle", ...}."""
    words = set(query.split())
    found = {}
    for kind, names in (
        ("object", class_names(world)),
        ("context", context_names(world)),
        ("cue", cue_names(world)),
    ):
        hits = words & set(names)
        if hits:
            found[kind] = hits
    return found


def test_negatives_name_something_absent_and_have_empty_masks(world):
    config = ToySegmenterConfig(**TINY, extra_object_negatives=0)
    batch = sample_batch(world, 64, seed=3, config=config)
    _, masks, _ = render_batch(world, batch.specs)
    assert len(batch.queries) == 3 * 64
    negatives = 0
    for p, query in enumerate(batch.queries):
        spec = batch.specs[batch.scene_index[p]]
        kind = batch.kinds[p]
        what = named(world, query)
        assert list(what) == [kind] and len(what[kind]) == 1, query  # names one thing, its kind
        (name,) = what[kind]
        held = {"object": spec.shape, "context": spec.context, "cue": spec.cue}[kind]
        if batch.positive[p]:
            assert name == held, (query, spec)
            assert torch.equal(batch.targets[p], masks[kind][batch.scene_index[p]].float())
            assert batch.targets[p].sum() > 0
        else:
            negatives += 1
            assert name != held, (query, spec)
            assert batch.targets[p].abs().sum() == 0
    assert 0.35 < negatives / len(batch.queries) < 0.65  # about half


def test_extra_object_negatives_ask_about_other_classes(world):
    config = ToySegmenterConfig(**TINY, extra_object_negatives=4)
    batch = sample_batch(world, 32, seed=8, config=config)
    _, masks, _ = render_batch(world, batch.specs)
    n_classes = len(class_names(world))
    for i, spec in enumerate(batch.specs):
        rows = [p for p in range(len(batch.queries)) if batch.scene_index[p] == i]
        objects = [p for p in rows if batch.kinds[p] == "object"]
        # The first object query is the usual one (positive or not); the extra ones each name
        # a different absent class, so every class is asked about at most once per scene.
        names = [next(iter(named(world, batch.queries[p])["object"])) for p in objects]
        assert len(set(names)) == len(names), names
        first_positive = bool(batch.positive[objects[0]])
        assert len(objects) == (n_classes if first_positive or spec.shape is None else 4)
        for p in objects[1:]:
            assert not batch.positive[p] and batch.targets[p].abs().sum() == 0
            assert names[objects.index(p)] != spec.shape
        assert {batch.kinds[p] for p in rows} == {"object", "context", "cue"}


def test_presence_loss_weighs_positives_and_negatives_equally(world):
    # Asking every negative twice must not change the presence term: the extra negatives would
    # otherwise outvote the positives and teach "never present".
    config = ToySegmenterConfig(**TINY, extra_object_negatives=0, dice_weight=0.0)
    segmenter = build_toy_segmenter(world, config, seed=3)
    batch = sample_batch(world, 6, seed=9, config=config)
    twice = torch.cat([torch.arange(len(batch.queries)), (~batch.positive).nonzero()[:, 0]])
    doubled = SegmenterBatch(
        images=batch.images,
        specs=batch.specs,
        scene_index=batch.scene_index[twice],
        queries=[batch.queries[p] for p in twice],
        kinds=[batch.kinds[p] for p in twice],
        positive=batch.positive[twice],
        targets=batch.targets[twice],
    )
    off = replace(config, presence_weight=0.0)
    with torch.no_grad():
        presence = [
            segmentation_loss(segmenter, b, config) - segmentation_loss(segmenter, b, off)
            for b in (batch, doubled)
        ]
    assert batch.positive.any() and (~batch.positive).any()
    torch.testing.assert_close(presence[0], presence[1], atol=1e-5, rtol=1e-5)


def test_a_killed_run_leaves_its_last_save(world, tmp_path):
    def stop_at_4(line):
        if line.startswith("segmenter step 4 "):
            raise KeyboardInterrupt

    config = ToySegmenterConfig(**TINY)
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(
            world,
            tmp_path,
            replace(config, steps=6, save_every=2),
            RunSettings(seed=0, progress=stop_at_4),
        )
    saved = json.loads((tmp_path / "segmenter" / TRAIN_FILE).read_text())
    assert saved["partial"] is True and saved["steps"] == 2
    # It loads, and a run continues from it.
    load_segmenter(tmp_path / "segmenter")
    report = train_segmenter(
        world,
        tmp_path / "next",
        replace(config, steps=2, init=tmp_path / "segmenter"),
        RunSettings(seed=1),
    )
    assert report.partial is False and report.init["steps"] == 2


def test_judge_query_and_context_only_scenes_are_in_the_training_data(world):
    config = ToySegmenterConfig(**TINY)
    batch = sample_batch(world, 64, seed=4, config=config)
    assert any(s.shape is None for s in batch.specs)
    assert any(s.cue is not None for s in batch.specs) and any(s.cue is None for s in batch.specs)
    queries = set(batch.queries)
    assert queries & {f"a {c}" for c in class_names(world)}  # object_query, what the judge asks
    assert "a watermark" in queries
    # A context-only scene only ever gets object negatives.
    for p, kind in enumerate(batch.kinds):
        if kind == "object" and batch.specs[batch.scene_index[p]].shape is None:
            assert not batch.positive[p]


def test_pair_logits_follow_the_segment_path(world, tiny):
    config = ToySegmenterConfig(**TINY)
    batch = sample_batch(world, 3, seed=5, config=config)
    with torch.no_grad():
        logits = pair_logits(tiny, batch.images, batch.queries, batch.scene_index)
        masks = tiny.segment(batch.images[batch.scene_index], batch.queries).masks
    # World scenes are 32 px, the tiny model's input 16 px: the resize is exercised too.
    assert logits.shape == (len(batch.queries), 32, 32)
    torch.testing.assert_close(torch.sigmoid(logits), masks, atol=1e-5, rtol=0)


def test_loss_decreases_on_a_fixed_batch(world):
    config = ToySegmenterConfig(**TINY)
    segmenter = build_toy_segmenter(world, config, seed=1)
    segmenter.model.train()
    batch = sample_batch(world, 8, seed=6, config=config)
    optimizer = torch.optim.Adam(segmenter.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = segmentation_loss(segmenter, batch, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_train_save_load_round_trip(world, tmp_path):
    seen = []
    report = train_segmenter(
        world,
        tmp_path,
        ToySegmenterConfig(**{**TINY, "steps": 4, "batch_size": 2}),
        RunSettings(seed=2, progress=seen.append),
    )
    steps = [line.split("  ")[0] for line in seen]
    assert report.steps == 4 and steps == ["segmenter step 2", "segmenter step 4"]
    path = tmp_path / "segmenter"
    assert report.path == str(path)
    saved = json.loads((path / TRAIN_FILE).read_text())
    assert saved["seed"] == 2 and saved["steps"] == 4 and saved["config"]["image_size"] == 16
    assert {"torch", "transformers"} <= set(saved["versions"])
    loaded = load_segmenter(path)
    assert loaded.image_size == 16 and len(loaded.tokenizer) == len(
        build_toy_segmenter(world, ToySegmenterConfig(**TINY)).tokenizer
    )
    # Training moved the weights away from the seeded initialisation, and the loaded copy
    # segments exactly like the one in memory would.
    fresh = build_toy_segmenter(world, ToySegmenterConfig(**TINY), seed=2)
    x = render_batch(world, sample_scenes(world, 2, seed=9))[0]
    queries = ["a circle", "water"]
    with torch.no_grad():
        a = loaded.segment(x, queries)
        b = fresh.segment(x, queries)
        again = load_segmenter(path).segment(x, queries)
    assert (a.masks - b.masks).abs().max() > 1e-4
    torch.testing.assert_close(a.masks, again.masks, atol=0, rtol=0)
    torch.testing.assert_close(a.presence, again.presence, atol=0, rtol=0)


def test_training_is_determined_by_the_seed(world, tmp_path):
    def train(seed, where):
        config = ToySegmenterConfig(**TINY)
        train_segmenter(
            world, tmp_path / where, replace(config, steps=2, batch_size=2), RunSettings(seed=seed)
        )
        return load_segmenter(tmp_path / where / "segmenter").model.state_dict()

    a, b, c = train(0, "a"), train(0, "b"), train(1, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_decoder_starts_with_film_as_the_identity(tiny):
    # With transformers' std-0.02 init the FiLM gain starts near 0 and training from scratch
    # idles for hundreds of steps (see _init_decoder).
    decoder = tiny.model.decoder
    assert torch.all(decoder.film_mul.bias == 1.0) and torch.all(decoder.film_add.bias == 0.0)
    assert decoder.reduces[0].weight.std() > 0.1


def test_steps_budget_is_checked(world, tmp_path):
    with pytest.raises(ValueError, match="steps"):
        train_segmenter(world, tmp_path, ToySegmenterConfig(**{**TINY, "steps": 0}))


def test_extract_layers_must_fit_the_vision_tower():
    with pytest.raises(ValueError, match="extract_layers"):
        ToySegmenterConfig(**{**TINY, "extract_layers": (1, 2)})


def test_gates_return_the_documented_rows(world, tiny):
    rows = segmenter_gates(tiny, world, n=12, seed=0)
    assert [r.name for r in rows] == [
        "object_iou",
        "context_iou",
        "object_presence_accuracy",
        "context_presence_accuracy",
        "cue_presence_accuracy",
    ]
    for row in rows:
        assert isinstance(row, Gate) and 0.0 <= row.value <= 1.0
        assert row.passed == (row.value >= row.threshold)
    assert [r.threshold for r in rows] == [0.8, 0.8, 0.95, 0.95, 0.95]
    assert not all(r.passed for r in rows)  # an untrained model is not good enough


class Oracle:
    """A "segmenter" that answers from the true masks, to check the gate arithmetic."""

    def __init__(self, world, specs, masks, *, miss_class=None):
        self.world, self.specs, self.masks, self.miss = world, specs, masks, miss_class

    def _mask(self, i, query):
        spec, words = self.specs[i], set(query.split())
        if spec.shape in words and spec.shape != self.miss:
            return self.masks["object"][i].float()
        if spec.context in words or (spec.cue and spec.cue in words):
            key = "context" if spec.context in words else "cue"
            return self.masks[key][i].float()
        return torch.zeros_like(self.masks["object"][i], dtype=torch.float32)

    def probe(self, images, queries):
        rows = range(images.shape[0])
        return torch.tensor([[self._mask(i, q).max().item() for q in queries] for i in rows])


def test_presence_accuracy_counts_misses_and_false_alarms(world):
    specs = sample_scenes(world, 40, seed=1)
    _, masks, _ = render_batch(world, specs)
    images = torch.zeros(40, 3, 32, 32)
    queries, present = presence_truth(world, specs, "object")
    assert queries == [f"a {c}" for c in class_names(world)]
    assert present.sum() == sum(s.shape is not None for s in specs)
    perfect = presence_accuracy(Oracle(world, specs, masks), images, queries, present)
    assert perfect.accuracy == perfect.recall == perfect.specificity == 1.0
    # Missing every circle: recall drops by the circles' share, absent pairs stay right.
    blind = presence_accuracy(
        Oracle(world, specs, masks, miss_class="circle"), images, queries, present
    )
    circles = sum(s.shape == "circle" for s in specs)
    assert blind.recall == pytest.approx(1 - circles / int(present.sum()))
    assert blind.specificity == 1.0 and blind.balanced < 1.0
    # Everything called absent still gets most pairs right, but not the balanced accuracy.
    nothing = presence_accuracy(
        Oracle(world, specs, masks), images, queries, torch.zeros_like(present)
    )
    assert nothing.recall != nothing.recall  # nan: no present pairs
    assert nothing.balanced == nothing.specificity < 1.0
    with pytest.raises(ValueError, match=r"\[B, Q\]"):
        presence_accuracy(Oracle(world, specs, masks), images, queries, present[:, :2])


def test_mask_iou():
    truth = torch.zeros(3, 4, 4, dtype=torch.bool)
    truth[0, :2] = True  # 8 pixels
    truth[1, :2] = True
    probs = torch.zeros(3, 4, 4)
    probs[0, :2] = 0.9  # exact
    probs[1, :1] = 0.9  # half
    torch.testing.assert_close(mask_iou(probs, truth), torch.tensor([1.0, 0.5, 1.0]))
