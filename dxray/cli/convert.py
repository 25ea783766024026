"""`dxray convert robustness | fairface`: released checkpoints -> dxray classifier
directories."""

from __future__ import annotations

from pathlib import Path

import typer

from dxray.cli.common import fail

convert_app = typer.Typer(
    no_args_is_help=True, help="Released checkpoints -> dxray classifier directories."
)


@convert_app.command("robustness")
def convert_robustness_(
    checkpoint: Path = typer.Argument(..., help="e.g. imagenet_l2_3_0.pt (Salient ImageNet's)."),
    out: Path = typer.Argument(..., help="The classifier directory to write."),
    class_names: str = typer.Option(
        ..., help="class_metadata.csv, a file with one name per line, or torchvision:<Weights>."
    ),
) -> None:
    """The robustness library's ResNet checkpoint -> a classifier directory (read with
    weights_only; the normaliser folded into the preprocessing).

    Example: dxray convert robustness imagenet_l2_3_0.pt models/robust_resnet50 --class-names class_metadata.csv
    """
    from dxray.models.convert import ConvertError, convert_robustness, imagenet_class_names

    try:
        path = convert_robustness(checkpoint, out, class_names=imagenet_class_names(class_names))
    except ConvertError as err:
        fail(str(err))
    typer.echo(f"wrote {path}")


@convert_app.command("fairface")
def convert_fairface_(
    checkpoint: Path = typer.Argument(..., help="e.g. res34_fair_align_multi_7_20190809.pt."),
    out: Path = typer.Argument(..., help="The classifier directory to write."),
    head: str = typer.Option("age", help="The audited classes: age, race or gender."),
) -> None:
    """FairFace's 18-output ResNet-34 -> a classifier directory whose classes are one head's.

    Example: dxray convert fairface res34_fair_align_multi_7_20190809.pt models/fairface_age --head age
    """
    from dxray.models.convert import ConvertError, convert_fairface

    try:
        path = convert_fairface(checkpoint, out, head=head)
    except ConvertError as err:
        fail(str(err))
    typer.echo(f"wrote {path}")
