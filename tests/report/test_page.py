"""The HTML report: one self-contained file, escaped text, numbers that match the catalog."""

import re

import pytest

from dxray.catalog.sample import CLASS_NAMES, write_sample
from dxray.catalog.views import connect
from dxray.report.page import write_report

EVIL = "<script>alert(1)</script>"
NAMES = (*CLASS_NAMES[:4], f'{EVIL} "hexagon" & co')


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    write_sample(root, NAMES)
    return root


@pytest.fixture(scope="module")
def page(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    write_report(root, out, "ckpt-b", diff_from="ckpt-a")
    return out.read_text()


def stat(page, key):
    match = re.search(rf'data-stat="{key}">([^<]*)<', page)
    assert match, key
    return match.group(1)


def test_one_file_with_every_image_inline(root, page):
    stored = (
        connect(root)
        .sql("SELECT count(DISTINCT (target_id, seed)) FROM images WHERE run_id = 'ckpt-b'")
        .fetchall()[0][0]
    )
    assert stored == 13  # 14 seeds, one diverged
    # ... and the shortcut section's evidence: for square <- grass the 2 grass images and the
    # 2 of the other scene (water); for star <- a watermark the 2 marked and the same 2 bare,
    # and star's object-free explanation (2 pool images; square has none in the sample); the
    # first screen's strips repeat each finding's object-free images (2 + 2)
    evidence = 8 + 2 + 4
    assert page.count("data:image/png;base64,") == stored + evidence
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == stored + evidence
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "url(" not in page and "<script" not in page.lower()


def test_catalog_text_is_escaped(page):
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &quot;hexagon&quot; &amp; co" in page


def test_summary_numbers_match_the_catalog(root, page):
    con = connect(root)
    findings, classes = con.sql(
        "SELECT count(*) FILTER (WHERE finding), count(DISTINCT class_index) "
        "FROM class_shortcuts WHERE run_id = 'ckpt-b'"
    ).fetchall()[0]
    failed = con.sql("SELECT count(*) FROM audit WHERE run_id = 'ckpt-b' AND NOT ok").fetchall()[0][
        0
    ]
    assert (findings, classes, failed) == (2, 5, 1)
    assert stat(page, "shortcut_classes") == "2 of 5"
    assert stat(page, "spurious_units") == "0 of 2"  # features.4:17 keeps 40-45% in b
    assert stat(page, "leads") == "0"  # b's only candidate (star <- a watermark) is a finding
    assert stat(page, "failed_seeds") == str(failed)
    assert stat(page, "seeds") == "14"
    assert stat(page, "diff_shortcuts_appeared") == "1"  # square <- grass
    assert stat(page, "diff_resolved") == "1" and stat(page, "diff_new_spurious") == "0"
    diff = page[page.index('id="diff"') :]
    assert "<b>square</b> ← grass" in diff and "0.40 → <b>1.30</b>" in diff  # appeared
    assert "<b>circle</b> ← water" in diff and "2.40 → <b>0.60</b>" in diff  # vanished
    assert "object absent → shown" in diff  # circle's explanation, not called "resolved"


def test_the_first_screen_is_the_answer(page):
    """The shortcut test's findings come first, each as a sentence with its numbers; no count
    of "spurious classes" from the class explanations is anywhere on the page."""
    order = [page.index(f'id="{a}"') for a in ("answer", "diff", "shortcuts", "units", "classes")]
    assert order == sorted(order)
    answer = page[page.index('id="answer"') : page.index('id="diff"')]
    cards = re.findall(r'data-finding="([^"]*)"', answer)
    assert cards == ["star &lt;- a watermark", "square &lt;- grass"]  # largest lift first
    assert (
        "star: its score rises 2.1 nats (about 8.2x the odds) when a watermark is added to an "
        "image with no star (30 pairs, 95% interval 1.7 to 2.5)."
    ) in answer
    assert "square: its score rises 1.3 nats (about 3.7x the odds) on grass" in answer
    assert "<b>×8.2</b>" in answer and "[1.70, 2.50]" in answer
    # square's explanation lacks the square in both seeds: the page says they agree
    assert "Its own explanation shows no square (in 2 of 2 seeds), which agrees" in answer
    assert "None of the 2 audited units is spurious" in answer
    assert "spurious classes" not in page.lower() and "explanation verdict" not in page


def test_units_are_shown_by_what_decided_them(root, tmp_path):
    page_a = write_report(root, tmp_path / "a.html", "ckpt-a").read_text()
    answer = page_a[page_a.index('id="answer"') : page_a.index('id="shortcuts"')]
    assert "unit features.4:17 (a top unit of circle): keeps 92% of its activation" in answer
    assert "(2.00 -&gt; 1.85; spurious at 50% or more), in 2 of 2 seeds" in answer
    units = page_a[page_a.index('id="units"') :]
    card = units[units.index('data-target="unit:features.4:17:0"') :]
    card = card[: card.index("</article>")]
    assert "<h4>features.4:17</h4>" in card and "a top unit of circle" in card
    assert "kept <b>92%</b> (spurious at ≥ 50%; 2 of 2 seeds)" in card
    assert "by intervention: spurious in 2 of 2 seeds" in card
    assert "kept <b>95%</b> (2.00 → 1.90)" in card  # seed 0
    assert "Unit(" not in page_a and "ClassCE(" not in page_a
    # the lead is apart from the findings, after them
    leads = answer[answer.index('class="leads"') :]
    assert "co ← grass? grass is in 75%" in leads and "data-finding" not in leads  # hexagon


def test_header_and_sections(page):
    assert "toy shapes audit, checkpoint b" in page
    assert "b2b2b2b2b2b2" in page  # the checkpoint hash, shortened
    for anchor in ("answer", "diff", "classes", "units", "probes"):
        assert f'id="{anchor}"' in page
    assert "CUDA out of memory" not in page  # that error is in ckpt-a, not the reported run
    assert page.count('class="badge failed"') >= 2  # the legend and the diverged unit seed


def test_default_run_is_the_latest_and_errors_show(root, tmp_path):
    out = write_report(root, tmp_path / "latest.html")
    assert "checkpoint b" in out.read_text()
    page_a = write_report(root, tmp_path / "a.html", "ckpt-a").read_text()
    assert "CUDA out of memory" in page_a and 'id="diff"' not in page_a
    # 14 seeds, one error; 8 shortcut evidence images (circle <- water, star <- a watermark)
    # and 2 pool images for each of circle, star and the unconfirmed lead hexagon <- grass;
    # the first screen's strips (2 + 2)
    assert page_a.count("data:image/png;base64,") == 13 + 8 + 3 * 2 + 4
    assert "did not confirm" in page_a and "grass?</h4>" in page_a and EVIL not in page_a


def test_empty_catalog_has_nothing_to_report(tmp_path):
    with pytest.raises(ValueError, match="no results"):
        write_report(tmp_path, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_the_shortcut_section_shows_each_finding_with_its_evidence(page):
    section = page[page.index('id="shortcuts"') :]
    section = section[: section.index("</section>")]
    # ckpt-b's findings, largest lift first, with intervals; not circle-water (0.6 nats)
    assert section.index("a watermark") < section.index("grass")
    assert "<b>2.10</b> <span class='sub'>[1.70, 2.50]</span>" in section
    assert "<b>1.30</b> <span class='sub'>[0.90, 1.70]</span>" in section
    assert "water</td>" not in section.split("</table>")[0]
    assert "the same scenes and seeds without it" in section and "the other scenes" in section
    # under each object-free image, the segmenter's highest object presence: why it counts
    assert section.count("object 0.01</span>") >= 2


def test_the_header_names_the_code_that_computed_the_run():
    import json

    from dxray.report.summary import header

    run = {"name": "toy", "dxray_version": "0.1.0", "status": "finished"}
    counts = {"seeds": 2}
    recorded = {**run, "versions_json": json.dumps({"torch": "2.13.0", "dxray_code": "4964977a"})}
    assert "code 4964977a</code>" in header(recorded, "r1", counts)
    for older in (run, {**run, "versions_json": "{"}, {**run, "versions_json": "[]"}):
        page = header(older, "r1", counts)
        assert "<dt>dxray</dt><dd>0.1.0</dd>" in page
