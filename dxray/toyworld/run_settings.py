"""How a toy trainer runs, shared by all of them: `RunSettings`.

Each trainer takes its own config (what it trains and for how long: `ToyClassifierConfig`,
`ToySegmenterConfig`, `GeneratorTrainingConfig`, ...) and one `RunSettings` (the seed, the
device, torch's CPU threads, where progress lines go), and writes to the folder it is given:

    run = RunSettings(seed=0, device="cuda", threads=4, progress=print)
    train_zoo_classifiers(world, "zoo", ZooClassifiersConfig(), run)
    train_segmenter(world, "zoo", ToySegmenterConfig(steps=1500), run)
    train_generator(world, "zoo/.generator-training", GeneratorTrainingConfig(seconds=3600), run)

`dxray zoo train` builds one from its --seed, --device and --threads and hands it to every part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class RunSettings:
    """The settings every toy trainer shares. Defaults: seed 0, on the CPU, torch's threads,
    quiet."""

    seed: int = 0  # every model's seed (recorded with it)
    # The segmenter's and the generator's device. The classifiers and the oracle are small CPU
    # models: they train on the CPU whatever this says.
    device: str = "cpu"
    threads: int | None = None  # torch's CPU threads; None (or 0): leave torch's choice
    progress: Progress = None  # gets one line of text at a time; None: say nothing

    def say(self, line: str) -> None:
        """Pass one progress line on (nothing without `progress`)."""
        if self.progress is not None:
            self.progress(line)

    def use_threads(self) -> None:
        """Set torch's CPU threads, if `threads` asks for a number."""
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
