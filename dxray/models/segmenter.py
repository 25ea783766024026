"""Text-prompted segmentation (CLIPSeg): is the object named by a query in the image, and where?

The judge asks two kinds of question of an explanation image: "is the class's object here?"
(present: a core feature; absent: the classifier was maximised by context alone, a spurious
feature) and "is this attribute here?" (a watermark, water: bias probes). Both are answered by
`Segmenter`, a thin wrapper over `transformers.CLIPSegForImageSegmentation` that:

- preprocesses tensors itself (resize to a square `image_size`, then mean/std normalise), so no
  torchvision, no PIL, and the path stays differentiable;
- calls CLIPSeg's parts (vision encoder -> decoder) rather than its `forward`, because `forward`
  runs the vision encoder under `torch.no_grad()` (transformers 5.24): through the parts,
  gradients reach the pixels when the caller wants them, and `probe` can encode each image once
  and decode it against many queries;
- turns the per-pixel probabilities into one presence score per image with a robust maximum
  (`presence_from_masks`).

"Compatible" models are those with CLIPSeg's layout: `.clip.vision_model`,
`.clip.get_text_features`, `.decoder` and `config.extract_layers` (e.g. a CLIPSeg fine-tuned by
the toy zoo and written with `save_pretrained`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dxray.models.sources import is_hub_id, load_part

# OpenAI CLIP's normalisation. Real CLIPSeg checkpoints ship a preprocessor_config.json with
# their own values (which `load_segmenter` prefers); these are only the fallback.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_IMAGE_SIZE = 352  # CLIPSeg's training resolution (its ViT-B/16 at 22x22 patches)
DEFAULT_TOP_FRACTION = 0.02
SETTINGS_FILE = "dxray_segmenter.json"
PREPROCESSOR_FILE = "preprocessor_config.json"


class SegmenterLoadError(RuntimeError):
    """A segmenter could not be loaded; the message says what to do."""


@dataclass
class Segmentation:
    """What `Segmenter.segment` returns, one row per image."""

    masks: Tensor  # [B, H, W] per-pixel probability in [0, 1], at the input image's size
    presence: Tensor  # [B] presence score in [0, 1] (see `presence_from_masks`)


def presence_from_masks(masks: Tensor, top_fraction: float = DEFAULT_TOP_FRACTION) -> Tensor:
    """Presence score per image: the mean of the highest `top_fraction` of its pixel probabilities.

    A robust maximum. The plain maximum lets one stray confident pixel (CLIPSeg's logits are
    noisy, and upsampling smears single hot patches) declare an object present; the mean over
    the whole image punishes small objects, so a clearly visible object that fills 5% of the
    frame would score near zero. Averaging the top 2% (about 2,500 pixels of a 352x352 map)
    scores an object fully once it covers that much of the image, while an isolated hot pixel
    counts for only 1/k of the score.

    masks: [B, ...] probabilities; every dimension after the first is pooled. Returns [B].
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    flat = masks.reshape(masks.shape[0], -1)
    # The small epsilon keeps e.g. 0.02 * 100 (= 2.0000000000000004) from rounding up to 3.
    k = max(1, math.ceil(top_fraction * flat.shape[1] - 1e-9))
    return flat.topk(k, dim=1).values.mean(dim=1)


class Segmenter:
    """CLIPSeg (transformers `CLIPSegForImageSegmentation`) or compatible: image + text -> mask.

    Does not force `torch.no_grad()`: wrap calls in it for inference (the judge does); leave it
    off to backpropagate from masks or presence to the input pixels.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        image_size: int = DEFAULT_IMAGE_SIZE,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        presence_top_fraction: float = DEFAULT_TOP_FRACTION,
        source: str = "",
    ):
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values (RGB), std > 0; got {mean}, {std}")
        if not 0.0 < presence_top_fraction <= 1.0:
            raise ValueError(
                f"presence_top_fraction must be in (0, 1], got {presence_top_fraction}"
            )
        patch = getattr(getattr(model.config, "vision_config", None), "patch_size", None)
        if isinstance(patch, int) and image_size % patch != 0:
            # CLIPSeg's decoder reshapes patch tokens into a square grid and upsamples by the
            # patch size: a size that is not a multiple of it drops pixels at the border.
            raise ValueError(
                f"image_size {image_size} must be a multiple of the patch size {patch}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.presence_top_fraction = float(presence_top_fraction)
        self.source = source

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device=None, dtype=None) -> Segmenter:
        self.model.to(device=device, dtype=dtype)
        return self

    def segment(self, images: Tensor, queries: list[str]) -> Segmentation:
        """Segment `queries[i]` in `images[i]`.

        images: [B, 3, H, W] in [0, 1], any H and W. queries: B strings, or one for all images.
        """
        # 1. Check inputs
        batch = self._check_images(images)
        queries = list(queries)
        if len(queries) == 1:
            queries = queries * batch
        if len(queries) != batch:
            raise ValueError(
                f"segment needs one query per image or a single query; got {len(queries)} "
                f"queries for {batch} images"
            )
        # 2. Encode the images and the (distinct) queries
        activations = self._encode_images(images)
        distinct = {q: i for i, q in enumerate(dict.fromkeys(queries))}
        text = self._encode_queries(list(distinct))
        rows = torch.tensor([distinct[q] for q in queries], device=text.device)
        # 3. Decode each image against its query; back to the input size
        masks = self._decode(activations, text[rows], images.shape[-2:])
        return Segmentation(masks=masks, presence=self.presence(masks))

    def probe(self, images: Tensor, queries: list[str]) -> Tensor:
        """[B, Q] presence of every query in every image.

        Each image is encoded once and each query once; only CLIPSeg's light decoder runs for
        each of the B * Q pairs, one query at a time so that memory stays that of `segment`.
        `probe(x, qs)[:, j]` equals `segment(x, [qs[j]]).presence`.
        """
        return torch.stack([self.presence(m) for m in self._masks_per_query(images, queries)], 1)

    def union_mask(self, images: Tensor, queries: list[str]) -> Tensor:
        """[B, H, W] per-pixel maximum over `queries` of their masks: where any of them is.
        Encodes like `probe` (each image and query once)."""
        return torch.stack(list(self._masks_per_query(images, queries))).amax(0)

    def _masks_per_query(self, images: Tensor, queries: list[str]):
        """Each query's [B, H, W] masks over all images, one query at a time."""
        batch = self._check_images(images)
        queries = list(queries)
        if not queries:
            raise ValueError("give at least one query")
        activations = self._encode_images(images)
        text = self._encode_queries(queries)
        for j in range(len(queries)):
            condition = text[j : j + 1].expand(batch, -1)
            yield self._decode(activations, condition, images.shape[-2:])

    def presence(self, masks: Tensor) -> Tensor:
        """Presence score per image from its mask, with this segmenter's `presence_top_fraction`."""
        return presence_from_masks(masks, self.presence_top_fraction)

    def preprocess(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] in [0, 1] -> normalised [B, 3, S, S] at the model's size; differentiable."""
        size = (self.image_size, self.image_size)
        x = images.to(device=self.device, dtype=torch.float32)
        if tuple(x.shape[-2:]) != size:
            # Antialiased like the PIL resize of the reference processor (not aspect-preserving:
            # CLIPSeg's decoder needs a square patch grid).
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.dtype)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the model and tokenizer in transformers' layout plus `dxray_segmenter.json`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        settings = {
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "presence_top_fraction": self.presence_top_fraction,
        }
        (path / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
        return path

    def _check_images(self, images: Tensor) -> int:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W] in [0, 1]; got {tuple(images.shape)}")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch")
        return images.shape[0]

    def _encode_images(self, images: Tensor) -> list[Tensor]:
        # CLIPSeg decodes from the vision encoder's hidden states after the layers listed in
        # `extract_layers`; hidden_states[0] is the embedding output, hence the +1.
        out = self.model.clip.vision_model(
            pixel_values=self.preprocess(images),
            output_hidden_states=True,
            interpolate_pos_encoding=True,
        )
        return [out.hidden_states[i + 1] for i in self.model.config.extract_layers]

    def _encode_queries(self, queries: list[str]) -> Tensor:
        max_length = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(
            queries, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(self.device)
        features = self.model.clip.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        )
        return features.pooler_output

    def _decode(self, activations: list[Tensor], condition: Tensor, size) -> Tensor:
        logits = self.model.decoder(activations, condition).logits
        logits = logits.reshape(condition.shape[0], 1, *logits.shape[-2:]).float()
        # Resize logits rather than probabilities: sharper edges, and still in [0, 1] after.
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(
                logits, size=tuple(size), mode="bilinear", align_corners=False, antialias=True
            )
        return torch.sigmoid(logits[:, 0])


def load_segmenter(
    source: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **overrides,
) -> Segmenter:
    """Load a segmenter from a local directory or a hub id (e.g. "CIDAS/clipseg-rd64-refined").

    A directory holds a transformers model (config.json + weights) and its tokenizer, as written
    by `Segmenter.save_pretrained` or downloaded from the hub. Image size, mean and std come from
    preprocessor_config.json if present (real CLIPSeg ships one), else dxray_segmenter.json, else
    352 px and CLIP's mean/std. `overrides` (image_size, mean, std, presence_top_fraction) win
    over both files.
    """
    from transformers import AutoTokenizer, CLIPSegForImageSegmentation

    src = str(source)
    local = Path(src).expanduser()
    is_local = local.is_dir()
    if not is_local and not is_hub_id(src):
        raise SegmenterLoadError(
            f"segmenter directory '{src}' does not exist. Pass a directory holding a CLIPSeg "
            "model and tokenizer (as written by save_pretrained) or a Hugging Face hub id such "
            "as 'CIDAS/clipseg-rd64-refined'."
        )
    if is_local:
        if not (local / "config.json").is_file():
            raise SegmenterLoadError(
                f"segmenter directory '{src}' has no config.json. It must hold a CLIPSeg model "
                "and its tokenizer as written by save_pretrained."
            )
        src = str(local)

    def load(what: str, fn):
        return load_part(
            fn, what=what, model="segmenter", src=src, is_local=is_local, error=SegmenterLoadError
        )

    model = load("model", lambda: CLIPSegForImageSegmentation.from_pretrained(src, dtype=dtype))
    tokenizer = load("tokenizer", lambda: AutoTokenizer.from_pretrained(src))
    settings = _settings(src, is_local)
    settings.update(overrides)
    model.eval().requires_grad_(False)
    model.to(device=device)
    return Segmenter(model, tokenizer, source=str(source), **settings)


def _settings(src: str, is_local: bool) -> dict:
    """image_size/mean/std/presence_top_fraction from the files beside the model, if any."""
    settings = {}
    saved = _optional_json(src, SETTINGS_FILE, is_local)
    if saved:
        keys = ("image_size", "mean", "std", "presence_top_fraction")
        settings.update({k: saved[k] for k in keys if k in saved})
    processor = _optional_json(src, PREPROCESSOR_FILE, is_local)
    if processor:
        size = _processor_size(processor.get("size"), src)
        if size is not None:
            settings["image_size"] = size
        if processor.get("do_normalize", True) is False:
            settings["mean"], settings["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        else:
            if "image_mean" in processor:
                settings["mean"] = processor["image_mean"]
            if "image_std" in processor:
                settings["std"] = processor["image_std"]
    return settings


def _processor_size(size, src: str) -> int | None:
    # Image processors write size as 352, {"height": 352, "width": 352} or {"shortest_edge": 352}.
    if size is None or isinstance(size, int):
        return size
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            if size["height"] != size["width"]:
                raise SegmenterLoadError(
                    f"{PREPROCESSOR_FILE} of '{src}' asks for {size['height']}x{size['width']} "
                    "images; CLIPSeg's decoder needs square inputs. Pass image_size=... instead."
                )
            return int(size["height"])
        if "shortest_edge" in size:
            return int(size["shortest_edge"])
    raise SegmenterLoadError(
        f"cannot read the image size {size!r} in {PREPROCESSOR_FILE} of '{src}'; "
        "pass image_size=... to load_segmenter."
    )


def _optional_json(src: str, name: str, is_local: bool) -> dict | None:
    if is_local:
        file = Path(src) / name
        return json.loads(file.read_text()) if file.is_file() else None
    from transformers.utils import cached_file

    resolved = cached_file(
        src,
        name,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    return json.loads(Path(resolved).read_text()) if resolved else None
