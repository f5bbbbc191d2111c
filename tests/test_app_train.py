"""The Train tab: a tiny run in a worker thread feeds the plots, stops cleanly with a checkpoint,
and the window keeps answering while it trains."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QElapsedTimer, QSettings, QTimer
from PySide6.QtWidgets import QMessageBox

from app.train_panel import TrainPanel
from core.gan.runs import RunPaths

TINY = {"size": 32, "batch": 8, "steps": 400, "channels": 8, "latent_dim": 16, "guide_steps": 4, "log_every": 2,
        "sample_every": 10, "checkpoint_every": 1000, "augment": "", "threads": 1}


@pytest.fixture(scope="module")
def cache(demo_root, tmp_path_factory):
    from core.data.cache import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("cache") / "cache32"
    prepare(PrepareConfig(data=str(demo_root), out=str(out), size=32))
    return out


@pytest.fixture
def panel(qtbot, tmp_path, demo_root):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    widget = TrainPanel(settings)
    qtbot.addWidget(widget)
    widget.set_dataset(demo_root)
    widget.run_edit.setText(str(tmp_path / "run"))
    widget.form.set_values(TINY)
    yield widget
    widget.stop_and_wait()     # never leave a run writing into a deleted tmp folder


class GapProbe:
    """A 10 ms timer on the GUI thread that records the longest time between two of its ticks."""

    def __init__(self):
        self.clock = QElapsedTimer()
        self.worst_ms = 0
        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(self._tick)

    def start(self):
        self.clock.start()
        self.timer.start()

    def _tick(self):
        self.worst_ms = max(self.worst_ms, self.clock.restart())


def test_form_is_built_from_the_train_config_with_tooltips(panel):
    from dataclasses import fields
    from core.gan.config import TrainConfig

    shown = {f.name for f in fields(TrainConfig) if f.metadata.get("form") is not False} - {"run", "data", "resume", "minutes"}
    assert set(panel.form.editors) == shown
    assert all(editor.toolTip() for editor in panel.form.editors.values())
    config = panel.build_config(resume=False)
    assert (config.size, config.batch, config.lr_g) == (32, 8, 6e-4)


def test_training_feeds_the_plots_and_closing_stops_it_with_a_checkpoint_while_staying_responsive(
        panel, qtbot, cache, monkeypatch):
    panel.cache_edit.setText(str(cache))
    probe = GapProbe()
    probe.start()
    panel.start(resume=False)
    assert panel.runner is not None and not panel.start_button.isEnabled()
    qtbot.waitUntil(lambda: panel.plots.points("g_loss") >= 3, timeout=300000)
    assert panel.plots.points("d_acc_real") >= 3
    assert panel.progress.value() > 0 and "ETA" in panel.eta.text()
    probe.timer.stop()  # closing waits for the checkpoint on purpose: not part of the probe
    asked = []
    monkeypatch.setattr("app.train_panel.QMessageBox.question",
                        lambda *args: asked.append(args[2]) or QMessageBox.Yes)
    assert panel.confirm_close(panel) is True  # what the window's closeEvent calls
    assert asked and "checkpoint" in asked[0]
    qtbot.waitUntil(lambda: panel.runner is None, timeout=60000)
    print(f"\nworst GUI gap during training: {probe.worst_ms} ms (bench/gui_responsiveness.py measures it)")
    paths = RunPaths(Path(panel.run_edit.text()))
    assert paths.latest_checkpoint() is not None
    assert paths.generator.exists()
    assert "stopped at step" in panel.checkpoint_note
    assert panel.resume_button.isEnabled()


def test_the_cli_and_the_app_build_the_same_config_for_the_same_choices(panel, demo_root, tmp_path):
    """One TrainConfig: the Train tab's choices and the same choices on the command line give equal configs."""
    from cli.commands.train import build_config
    from cli.main import build_parser

    panel.set_checked_classes(["Mass", "Nodule", "Effusion"])
    panel.form.set_values({"lr_g": 1e-4, "precision": "mixed_bfloat16", "balanced": False})
    panel.budget.setValue(7.5)
    from_app = panel.build_config(resume=False)
    args = build_parser(only="train").parse_args([
        "train", "--run", str(tmp_path / "run"), "--data", str(demo_root), "--classes", "Effusion,Mass,Nodule",
        "--size", "32", "--batch", "8", "--steps", "400", "--channels", "8", "--latent-dim", "16",
        "--guide-steps", "4", "--log-every", "2", "--sample-every", "10", "--checkpoint-every", "1000", "--augment", "",
        "--threads", "1", "--lr-g", "1e-4", "--precision", "mixed_bfloat16", "--minutes", "7.5", "--no-balanced"])
    from_cli = build_config(args)
    assert from_cli == from_app


def test_start_on_a_trained_run_asks_first_and_leaves_its_plots_and_files_untouched(panel, tmp_path, monkeypatch):
    run = tmp_path / "run"
    paths = RunPaths(run)
    paths.make()
    from core.gan.config import TrainConfig

    TrainConfig(run=str(run), data=str(tmp_path), size=32).save(paths.config)
    paths.metrics.write_text('{"step": 5, "g_loss": 1.0}\n')
    paths.checkpoint(5).write_bytes(b"weights")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    panel.load_run()
    asked = []

    def cancel(box):
        asked.append(box.text())
        return QMessageBox.Cancel

    monkeypatch.setattr(QMessageBox, "exec", cancel)
    panel.start(resume=False)
    assert asked and "step 5" in asked[0] and "--" not in asked[0]
    assert panel.runner is None and len(panel.plots.rows) == 1
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_presets_set_a_time_budget_and_the_advanced_fields_have_readable_names(panel):
    panel.preset_buttons["Quick look"].setChecked(True)
    config = panel.build_config(resume=False)
    assert config.minutes == 5 and config.steps >= 100_000
    panel.preset_buttons["Best quality"].setChecked(True)
    config = panel.build_config(resume=False)
    assert (config.minutes, config.size, config.diversity_weight) == (30, 128, 4.0)
    label = panel.form.layout().labelForField(panel.form.editors["lr_g"]).text()
    assert label == "Generator learning rate"
    assert not panel.form.isVisible()


def test_the_advanced_settings_fit_the_side_panel_without_a_horizontal_scroll_bar(panel, qtbot):
    from PySide6.QtWidgets import QScrollArea

    panel.resize(1000, 700)
    panel.show()
    panel.advanced.setChecked(True)
    qtbot.waitUntil(panel.form.isVisible)
    scroll = panel.findChild(QScrollArea)
    side = scroll.widget()
    assert side.minimumSizeHint().width() <= scroll.maximumViewportSize().width(), \
        "the left panel is wider than its scroll area"
    assert not scroll.horizontalScrollBar().isVisible()


def test_a_choice_with_a_name_shows_the_name_and_gives_its_value(panel):
    combo = panel.form.editors["guide_fold"]
    assert [combo.itemText(i) for i in range(combo.count())] == ["automatic", "1", "2", "4"]
    assert panel.build_config(resume=False).guide_fold == 0
    combo.setCurrentIndex(combo.findText("2"))
    assert panel.build_config(resume=False).guide_fold == 2
