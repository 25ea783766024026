"""Unit CSVs: dxray's format and Salient ImageNet's published crowd answers (a synthetic file
in the real format: the real one may not be redistributed)."""

import csv
import io

import pytest

from dxray.labels import MTURK_COLUMNS, UnitCsvError, read_unit_csv


def salient_csv(path, answers, *, bom=False):
    """answers: {(class, wordnet id, feature, rank): [Answer.main of each worker]}."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(MTURK_COLUMNS)
    worker = 0
    for (c, wnid, f, rank), mains in answers.items():
        for main in mains:
            worker += 1
            reason = 'the "water", mostly,\nand the sky'  # quotes, commas, a newline
            writer.writerow([f"A{worker:05d}", wnid, c, f, rank, main, 4, reason])
    path.write_text(("\ufeff" if bom else "") + buffer.getvalue(), encoding="utf-8")
    return path


M, S, B = "main_object", "separate_object", "background"
ANSWERS = {
    (0, "n01440764", 1797, 1): [M, M, M, S, B],  # 2 of 5 spurious: core
    (0, "n01440764", 925, 2): [B, B, S, M, M],  # 3 of 5: spurious
    (2, "n01484850", 1797, 1): [B, B, B, B, B],
}


def test_the_published_format_becomes_one_labelled_unit_per_pair(tmp_path):
    table = read_unit_csv(salient_csv(tmp_path / "discover_spurious_features.csv", ANSWERS))
    assert table.format == "salient-imagenet" and table.labelled
    got = [(u.class_index, u.feature_index, u.rank, u.label, u.answers) for u in table.units]
    assert got == [(0, 1797, 1, "core", 5), (0, 925, 2, "spurious", 5), (2, 1797, 1, "spurious", 5)]
    first = table.units[0]
    assert first.votes == {M: 3, S: 1, B: 1} and first.wordnet_id == "n01440764"
    # lines of the file: each answer's reason spans two lines (the 6th answer starts on 12)
    assert first.line == 2 and table.units[1].line == 12


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path):
    table = read_unit_csv(salient_csv(tmp_path / "f.csv", ANSWERS, bom=True))
    assert len(table.units) == 3


def test_dxray_format_with_and_without_labels(tmp_path):
    (tmp_path / "a.csv").write_text("class_index,feature_index\n0,7\n2,5\n0,7\n")
    table = read_unit_csv(tmp_path / "a.csv")
    assert table.format == "dxray" and not table.labelled
    assert [(u.class_index, u.feature_index, u.line) for u in table.units] == [(0, 7, 2), (2, 5, 3)]
    (tmp_path / "b.csv").write_text("class_index,feature_index,label\n0,7,Spurious\n")
    assert read_unit_csv(tmp_path / "b.csv").units[0].label == "spurious"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (["A1", "n01440764", "0", "3", "1", "mainobject", "4", ""], ["line 2", "Answer.main",
                                                                     "'main_object'"]),
        (["A1", "n01440764", "zero", "3", "1", M, "4", ""], ["line 2", "Input.class_index"]),
        (["A1", "n01440764", "0", "3", "-1", M, "4", ""], ["line 2", "Input.feature_rank"]),
    ],
)  # fmt: skip
def test_errors_name_the_file_line_and_column(tmp_path, row, expected):
    path = tmp_path / "f.csv"
    with path.open("w", newline="") as file:
        csv.writer(file).writerows([MTURK_COLUMNS, row])
    with pytest.raises(UnitCsvError) as info:
        read_unit_csv(path)
    assert "f.csv'" in str(info.value)
    for part in expected:
        assert part in str(info.value)


def test_one_class_with_two_wordnet_ids_is_refused(tmp_path):
    answers = {(0, "n01440764", 1, 1): [M], (0, "n99999999", 2, 2): [M]}
    with pytest.raises(UnitCsvError, match="line 4, column Input.wordnet_id: class 0"):
        read_unit_csv(salient_csv(tmp_path / "f.csv", answers))


def test_a_header_that_is_neither_format_says_what_both_are(tmp_path):
    (tmp_path / "f.csv").write_text("WorkerId,Input.class_index\nA,0\n")
    with pytest.raises(UnitCsvError, match="discover_spurious_features.csv as published"):
        read_unit_csv(tmp_path / "f.csv")


def test_lines_are_counted_in_the_file_when_a_quoted_cell_spans_lines(tmp_path):
    path = tmp_path / "units.csv"
    path.write_text('class_index,feature_index,label,note\n0,1,core,"two\nlines"\n1,x,core,\n')
    with pytest.raises(UnitCsvError, match="line 4, column feature_index"):  # not line 3
        read_unit_csv(path)


def test_a_header_without_units_is_refused(tmp_path):
    path = tmp_path / "units.csv"
    path.write_text("class_index,feature_index,label\n\n")
    with pytest.raises(UnitCsvError, match="has a header and no unit"):
        read_unit_csv(path)
