"""Soft prompts: placeholder layout, injection through the embedding hook, word decoding."""

import pytest
import torch

from dxray.explain import prompt as sp


def test_layout_places_k_slots_between_prefix_and_suffix(tiny_tokenizer):
    lay = sp.layout(tiny_tokenizer, "a photo of {} on water", 3)
    ids = lay.input_ids.tolist()
    assert len(ids) == tiny_tokenizer.model_max_length
    assert ids[0] == tiny_tokenizer.bos_token_id
    assert lay.positions.tolist() == [4, 5, 6]  # bos, a, photo, of
    plain = tiny_tokenizer("a photo of", add_special_tokens=False)["input_ids"]
    assert ids[1:4] == plain
    after = tiny_tokenizer("on water", add_special_tokens=False)["input_ids"]
    assert ids[7 : 7 + len(after)] == after
    assert ids[7 + len(after)] == tiny_tokenizer.eos_token_id


def test_injecting_a_words_embedding_equals_the_word(tiny_generator):
    gen = tiny_generator
    lay = sp.layout(gen.tokenizer, "a photo of {}", 1)
    vec = sp.init_from_words(gen.tokenizer, gen.text_encoder, ["circle"], 1)[None]
    with torch.no_grad():
        soft = sp.encode(gen.text_encoder, lay, vec)
        hard = sp.encode_text(gen.text_encoder, gen.tokenizer, ["a photo of circle"])
    torch.testing.assert_close(soft, hard)
    # ...and a different vector changes the conditioning from that position on.
    with torch.no_grad():
        # (a constant shift would vanish in CLIP's layer norms: perturb with noise)
        other = sp.encode(gen.text_encoder, lay, vec + torch.randn(vec.shape))
    pos = lay.positions[0]
    assert torch.allclose(other[:, :pos], soft[:, :pos])
    assert not torch.allclose(other[:, pos], soft[:, pos])


def test_hook_is_removed_after_encoding(tiny_generator):
    emb = tiny_generator.text_encoder.get_input_embeddings()
    lay = sp.layout(tiny_generator.tokenizer, "{}", 2)
    sp.encode(tiny_generator.text_encoder, lay, torch.zeros(1, 2, 16))
    assert not emb._forward_hooks


def test_projection_is_straight_through(tiny_generator):
    table = sp.token_embeddings(tiny_generator.text_encoder)
    vectors = (table[[5, 9]] + 0.01 * torch.randn(2, 16)).requires_grad_(True)
    projected = sp.project_to_vocab(vectors, table)
    torch.testing.assert_close(projected.detach(), table[[5, 9]])
    projected.sum().backward()
    assert torch.equal(vectors.grad, torch.ones_like(vectors))


def test_nearest_words_are_whole_words(tiny_generator):
    gen = tiny_generator
    vec = sp.init_from_words(gen.tokenizer, gen.text_encoder, ["water", "star"], 2)[None]
    words = sp.nearest_words(gen.tokenizer, gen.text_encoder, vec, k=2)
    assert [w[0][0] for w in words[0]] == ["water", "star"]
    assert words[0][0][0][1] == pytest.approx(1.0, abs=1e-4)


def test_embedding_rows_past_the_vocabulary_are_never_named_or_projected_to():
    # SD-family text encoders pad their token table past the tokenizer's vocabulary; a vector
    # nearest such a row must still get words, and a hard prompt must not land on one.
    from dxray.models.build import GeneratorArch, build_generator

    gen = build_generator(GeneratorArch(), seed=0)
    n = sp.token_embeddings(gen.text_encoder).shape[0]
    gen.text_encoder.resize_token_embeddings(n + 8, mean_resizing=False)
    table = sp.token_embeddings(gen.text_encoder)
    padded = table[n : n + 2].detach()[None]
    words = sp.nearest_words(gen.tokenizer, gen.text_encoder, padded, k=3)
    vocab = {t.replace("</w>", "") for t in gen.tokenizer.get_vocab()}
    assert all(word in vocab for row in words[0] for word, _ in row)
    projected = sp.project_to_vocab(padded, table, sp.unmapped_ids(gen.tokenizer, n + 8))
    distance, row = torch.cdist(projected[0], table.detach()).min(-1)
    assert bool((row < n).all()) and float(distance.max()) < 1e-3


def test_random_init_is_per_row_seeded(tiny_generator):
    a = sp.init_random(tiny_generator.text_encoder, 4, seed=1)
    b = sp.init_random(tiny_generator.text_encoder, 4, seed=1)
    c = sp.init_random(tiny_generator.text_encoder, 4, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_layout_errors(tiny_tokenizer):
    with pytest.raises(ValueError, match="exactly one"):
        sp.layout(tiny_tokenizer, "a {} and {}", 1)
    with pytest.raises(ValueError, match="at least one vector"):
        sp.layout(tiny_tokenizer, "{}", 0)
    with pytest.raises(ValueError, match="Shorten the template"):
        sp.layout(tiny_tokenizer, "a photo of {}", 15)
