"""The Evaluate and Generate tabs show the augmentation bench's verdict; the report keeps it.

Built from a fixed augment_bench.json (tests/fixtures/augment_bench_report.json, written by a real
bench on toy data), whose verdict each test sets to what it checks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.evaluate_panel import EvaluatePanel, RESULT_HINTS
from app.verdict_banner import TITLES
from core.evaluation.verdict import VERDICTS, verdict_text

FIXTURE = Path(__file__).parent / "fixtures" / "augment_bench_report.json"


def write_bench(run: Path, verdict: str, gain: float = 0.05, se: float = 0.01) -> dict:
    """RUN/evaluation/augment_bench.json from the fixture, with the given verdict."""
    report = json.loads(FIXTURE.read_text(encoding="utf-8"))
    report["run"] = str(run)
    report["verdict"].update(verdict=verdict, label=VERDICTS[verdict], gain=gain, se=se)
    report["verdict_text"] = verdict_text(report["verdict"])
    (run / "evaluation").mkdir(parents=True, exist_ok=True)
    (run / "evaluation" / "augment_bench.json").write_text(json.dumps(report), encoding="utf-8")
    return report


@pytest.fixture
def panel(qtbot):
    widget = EvaluatePanel()
    qtbot.addWidget(widget)
    return widget


@pytest.mark.parametrize("verdict, gain", [("helps", 0.05), ("no_better", 0.005), ("hurts", -0.2)])
def test_the_banner_shows_the_verdict_of_the_saved_bench_with_what_to_do(panel, tmp_path, verdict, gain):
    report = write_bench(tmp_path / "run", verdict, gain)
    panel.set_run(tmp_path / "run")
    text = panel.banner.plain_text()
    assert panel.banner.key == verdict
    assert TITLES[verdict] in text and panel.banner.what_to_do() in text
    assert f"{gain:+.3f}" in text                                         # the numbers behind it
    assert report["created"] in text
    assert panel.pages["bench"].is_filled() and panel.results.currentWidget() is panel.pages["bench"]
    assert panel.augment_table.rowCount() == len(report["classes"]) + 4


def test_the_banners_differ_in_colour(panel, tmp_path):
    styles = set()
    for verdict in ("helps", "no_better", "hurts"):
        write_bench(tmp_path / verdict, verdict)
        panel.set_run(tmp_path / verdict)
        styles.add(panel.banner.styleSheet())
    panel.set_run(tmp_path / "no bench")
    styles.add(panel.banner.styleSheet())
    assert len(styles) == 4


def test_without_results_the_banner_asks_for_a_bench_and_every_result_area_says_what_to_do(panel, tmp_path):
    panel.set_run(tmp_path / "run")
    assert panel.banner.key == "not_run" and "Run the augmentation bench" in panel.banner.plain_text()
    for key, page in panel.pages.items():
        assert not page.is_filled() and page.hint.text() == RESULT_HINTS[key]
    assert not panel.open_report_button.isEnabled() and not panel.save_report_button.isEnabled()
    titles = [panel.results.tabText(i) for i in range(panel.results.count())]
    assert len({t.split()[0] for t in titles}) == len(titles)        # no two tabs with near-identical names


def test_every_bench_row_and_arm_explains_itself(panel, tmp_path):
    report = write_bench(tmp_path / "run", "no_better")
    panel.set_run(tmp_path / "run")
    table = panel.augment_table
    for c in range(1, table.columnCount()):
        assert table.horizontalHeaderItem(c).toolTip() == report["arms"][table.horizontalHeaderItem(c).text()][
            "description"]
    labelled = {table.item(r, 0).text(): table.item(r, 0).toolTip() for r in range(table.rowCount())}
    assert "every finding counts equally" in labelled["balanced accuracy"]
    assert "duplicate control" in labelled["gain vs control (SE)"]
    assert "the control repeats real images" in panel.augment_summary.text()


def test_the_report_opens_saves_and_holds_the_verdict(panel, tmp_path, monkeypatch):
    write_bench(tmp_path / "run", "hurts", gain=-0.2)
    panel.set_run(tmp_path / "run")
    opened = []
    monkeypatch.setattr("app.evaluate_panel.QDesktopServices.openUrl", lambda url: opened.append(url.toLocalFile()))
    assert panel.open_report_button.isEnabled()
    panel.open_report_button.click()
    assert opened == [str(tmp_path / "run" / "evaluation" / "report.html")]
    page = Path(opened[0]).read_text(encoding="utf-8")
    assert 'class="verdict hurts"' in page and "Synthetic images hurt" in page and "-0.200" in page

    saved = panel.save_report(str(tmp_path / "for the ethics review.html"))
    copy = saved.read_text(encoding="utf-8")
    assert 'class="verdict hurts"' in copy and "<h2>Augmentation bench</h2>" in copy
    assert "src=\"http" not in copy and "href=\"http" not in copy      # self-contained
    assert "Report saved" in panel.status.text()


def test_a_report_that_cannot_be_saved_is_one_line(panel, tmp_path):
    write_bench(tmp_path / "run", "helps")
    panel.set_run(tmp_path / "run")
    (tmp_path / "a file").write_text("not a folder")
    errors = []
    panel.error.connect(errors.append)
    assert panel.save_report(str(tmp_path / "a file" / "report.html")) is None
    assert len(errors) == 1 and "a file" in errors[0] and "\n" not in errors[0]
