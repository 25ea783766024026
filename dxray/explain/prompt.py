"""Soft prompts: learnable vectors in the text encoder's token-embedding space.

A template such as "a photo of {}" is tokenised once; its "{}" becomes k placeholder positions
whose token embeddings are overwritten by the learned vectors (one set of k per batch row, so B
independent targets share one batch). `CLIPTextModel.forward` takes no `inputs_embeds` and needs
`input_ids` for EOS pooling, so the vectors go in through a forward hook on the token-embedding
layer.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class PromptLayout:
    """Token ids of a template with k placeholder slots, and where the slots are."""

    input_ids: Tensor  # [L]
    positions: Tensor  # [k]


def layout(tokenizer, template: str, k: int) -> PromptLayout:
    """Tokenise `template` ("a photo of {}") with k placeholder slots at "{}"."""
    if template.count("{}") != 1:
        raise ValueError(f"prompt template {template!r} must contain exactly one '{{}}'")
    if k < 1:
        raise ValueError(f"a soft prompt needs at least one vector, got k={k}")
    prefix, suffix = (part.strip() for part in template.split("{}"))

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    # The placeholder's id only matters for EOS pooling: it must not be a special token.
    placeholder = ids("x")[0]
    body = ids(prefix) + [placeholder] * k + ids(suffix)
    length = tokenizer.model_max_length
    if len(body) + 2 > length:
        raise ValueError(
            f"template {template!r} with k={k} needs {len(body) + 2} tokens; the text "
            f"encoder takes {length}. Shorten the template or use fewer vectors."
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    full = [tokenizer.bos_token_id] + body + [tokenizer.eos_token_id]
    full += [pad] * (length - len(full))
    start = 1 + len(ids(prefix))
    return PromptLayout(torch.tensor(full), torch.arange(start, start + k))


def token_embeddings(text_encoder: nn.Module) -> Tensor:
    """The text encoder's token-embedding table [vocab, d]."""
    return text_encoder.get_input_embeddings().weight


def init_from_words(tokenizer, text_encoder, words: list[str], k: int) -> Tensor:
    """One row's k vectors [k, d] from words (their first tokens), cycled to length k."""
    table = token_embeddings(text_encoder)
    ids = []
    for word in words:
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not pieces:
            raise ValueError(f"init word {word!r} tokenises to nothing")
        ids.append(pieces[0])
    if not ids:
        raise ValueError("init words are empty: give at least one word, or use random init")
    return table[torch.tensor([ids[i % len(ids)] for i in range(k)])].detach().clone()


def init_random(text_encoder, k: int, seed: int) -> Tensor:
    """One row's k vectors [k, d], drawn per dimension with the embedding table's mean and std.

    Each row has its own seed, so a row's start does not depend on what else is in the batch.
    """
    table = token_embeddings(text_encoder).detach().float()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((k, table.shape[1]), generator=gen)
    vectors = table.mean(0).cpu() + noise * table.std(0).cpu()
    return vectors.to(device=table.device, dtype=token_embeddings(text_encoder).dtype)


@contextmanager
def injected(text_encoder: nn.Module, positions: Tensor, vectors: Tensor):
    """While active, the text encoder sees `vectors` [B, k, d] at `positions` of every row."""

    def hook(_module, _inputs, output):
        out = output.clone()
        out[:, positions] = vectors.to(out.dtype)
        return out

    handle = text_encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def encode(text_encoder: nn.Module, layout_: PromptLayout, vectors: Tensor) -> Tensor:
    """Conditioning [B, L, d] for B rows of soft-prompt vectors [B, k, d]."""
    ids = layout_.input_ids.to(vectors.device).expand(vectors.shape[0], -1)
    with injected(text_encoder, layout_.positions.to(vectors.device), vectors):
        return text_encoder(input_ids=ids)[0]


def encode_text(text_encoder: nn.Module, tokenizer, texts: list[str]) -> Tensor:
    """Conditioning [B, L, d] of ordinary text (e.g. the empty prompt for guidance)."""
    device = token_embeddings(text_encoder).device
    ids = tokenizer(
        texts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )["input_ids"].to(device)
    return text_encoder(input_ids=ids)[0]


def nearest_tokens(vectors: Tensor, table: Tensor, exclude: list[int] = (), k: int = 1):
    """Cosine-nearest vocabulary rows for each vector: (similarities, ids), each [..., k]."""
    sims = F.normalize(vectors.float(), dim=-1) @ F.normalize(table.float(), dim=-1).T
    if exclude:
        sims[..., list(exclude)] = -2.0
    return sims.topk(k, dim=-1)


def project_to_vocab(vectors: Tensor, table: Tensor, exclude: list[int] = ()) -> Tensor:
    """Hard-prompt projection (PEZ, Wen et al. 2023): the forward pass sees the nearest real
    token embedding, the gradient updates the continuous vector (straight-through)."""
    _, ids = nearest_tokens(vectors, table, exclude, k=1)
    hard = table[ids[..., 0]].to(vectors.dtype)
    return vectors + (hard - vectors).detach()


def special_ids(tokenizer) -> list[int]:
    return sorted(set(tokenizer.all_special_ids))


def unmapped_ids(tokenizer, n_rows: int) -> list[int]:
    """Specials and the embedding rows no token maps to: never a hard prompt's token."""
    rows = set(range(n_rows)) - set(tokenizer.get_vocab().values())
    return sorted(rows | set(special_ids(tokenizer)))


def non_word_ids(tokenizer, n_rows: int | None = None) -> list[int]:
    """Ids that are not readable whole words (special tokens, word pieces, punctuation), and,
    given the embedding table's `n_rows`, the rows no token maps to (tables padded past the
    vocabulary, as SD-family text encoders often are)."""
    vocab = tokenizer.get_vocab()
    words = {i for tok, i in vocab.items() if tok.endswith("</w>") and _is_word(tok[:-4])}
    if not words:  # a tokenizer without end-of-word marks: keep everything but specials
        words = set(vocab.values()) - set(special_ids(tokenizer))
    every = set(vocab.values()) if n_rows is None else set(range(n_rows))
    return sorted(every - words)


def nearest_words(tokenizer, text_encoder, vectors: Tensor, k: int = 3):
    """For each row and vector, the k nearest whole words with their cosine similarity.

    Returns a list (rows) of lists (vectors) of [(word, similarity), ...].
    """
    table = token_embeddings(text_encoder)
    excluded = non_word_ids(tokenizer, table.shape[0])
    sims, ids = nearest_tokens(vectors.detach(), table.detach(), excluded, k)
    words = []
    for row_sims, row_ids in zip(sims.tolist(), ids.tolist(), strict=True):
        words.append(
            [
                [
                    (_clean(tokenizer.convert_ids_to_tokens(i)), round(s, 4))
                    for i, s in zip(ii, ss, strict=True)
                ]
                for ii, ss in zip(row_ids, row_sims, strict=True)
            ]
        )
    return words


def _is_word(text: str) -> bool:
    # Byte-level vocabularies hold every single byte as a "word" ("h</w>", "Ï</w>"): those
    # read as noise in an explanation, so only ASCII words of two letters or more (and "a").
    return text.isascii() and text.isalpha() and (len(text) > 1 or text == "a")


def _clean(token: str) -> str:
    # CLIP BPE marks word ends with "</w>"; byte-level BPE marks spaces with "Ġ".
    return token.replace("</w>", "").replace("Ġ", "").strip()
