"""The pictures' data: curves, confusion matrix, per-class table, conv1 filters, Grad-CAM,
the report page, `plot` with several runs, `evaluate --report`, `predict --explain`."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.engine.visuals import conv1_tiles, curves_figure
from alexnet.models import get_model
from alexnet.tasks import analysis, figures
from alexnet.tasks.analysis import Predictions
from alexnet.tasks.gradcam import grad_cam
from alexnet.tasks.plot import compare_figure

from conftest import write_images

TINY = ["--arch", "alexnet_cifar", "--image-size", "32", "--batch-size", "8", "--workers", "0", "--device", "cpu"]


def _rows(n: int, top5: float = 1.0) -> list[dict[str, float]]:
    return [{"epoch": e, "train_loss": 2.0 / e, "train_top1": 0.2 + 0.1 * e, "val_loss": 2.1 / e,
             "val_top1": [0.3, 0.5, 0.45, 0.4][(e - 1) % 4], "val_top5": top5, "lr": 0.01 / e,
             "img_per_s": 100.0, "seconds": 10.0} for e in range(1, n + 1)]


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


# ---- curves --------------------------------------------------------------------------


def test_curves_have_integer_epochs_chance_best_epoch_and_lr():
    fig = curves_figure(_rows(1), classes=5)
    ax_loss, ax_acc, ax_lr = fig.axes
    fig.canvas.draw()
    assert [t for t in ax_acc.get_xticks() if ax_acc.get_xlim()[0] <= t <= ax_acc.get_xlim()[1]] == [1.0]
    assert ax_acc.get_xlim() == (0.5, 1.5)
    fig = curves_figure(_rows(4), classes=5)
    fig.canvas.draw()
    ax_loss, ax_acc, ax_lr = fig.axes
    ticks = [t for t in ax_acc.get_xticks() if ax_acc.get_xlim()[0] <= t <= ax_acc.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)  # never 1.5 or 2.5
    labels = _labels(ax_acc)
    assert not any("top-5" in label for label in labels)  # 5 classes: top-5 is always 100%
    chance = next(line for line in ax_acc.get_lines() if line.get_label().startswith("chance"))
    assert chance.get_ydata()[0] == pytest.approx(20.0)
    best = next(line for line in ax_acc.get_lines() if line.get_label().startswith("best"))
    assert list(best.get_xdata()) == [2] and list(best.get_ydata()) == [pytest.approx(50.0)]
    lr = next(line for line in ax_lr.get_lines() if line.get_label() == "learning rate")
    assert list(lr.get_ydata()) == pytest.approx([0.01, 0.005, 0.01 / 3, 0.0025])


def test_top5_shown_only_with_more_than_5_classes():
    assert any("top-5" in label for label in _labels(curves_figure(_rows(3, 0.9), classes=10).axes[1]))
    assert not any("top-5" in label for label in _labels(curves_figure(_rows(3), classes=5).axes[1]))
    # unknown class count: shown only when it says something
    assert not any("top-5" in label for label in _labels(curves_figure(_rows(3), classes=None).axes[1]))
    assert any("top-5" in label for label in _labels(curves_figure(_rows(3, 0.9), classes=None).axes[1]))


def test_compare_labels_each_run_by_name():
    fig = compare_figure({"scratch": _rows(3), "finetune": _rows(2)}, classes=5)
    labels = _labels(fig.axes[1])
    assert "scratch top-1" in labels and "finetune top-1" in labels
    ys = {line.get_label(): list(line.get_ydata()) for line in fig.axes[1].get_lines()}
    assert ys["finetune top-1"] == pytest.approx([30.0, 50.0])


# ---- confusion matrix and per-class table ---------------------------------------------


def _predictions(n: int = 200, classes: int = 4, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += rng.normal(1.0, 1.0, n)  # mostly right, not always
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return Predictions(probs, labels, np.arange(n), [f"c{i}" for i in range(classes)])


def test_confusion_counts_match_predictions_and_rows_are_normalised():
    from sklearn.metrics import confusion_matrix

    pred = _predictions()
    counts = analysis.confusion(pred)
    assert (counts == confusion_matrix(pred.labels, pred.predicted, labels=range(4))).all()
    for t, p in zip(pred.labels, pred.predicted):
        counts[t, p] -= 1
    assert (counts == 0).all()
    counts = analysis.confusion(pred)
    fig = figures.confusion_figure(counts, pred.class_names)
    shown = fig.axes[0].images[0].get_array()
    assert np.allclose(shown, counts / counts.sum(1, keepdims=True))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == pred.class_names


def test_per_class_table_matches_sklearn(tmp_path):
    from sklearn.metrics import classification_report

    pred = _predictions(classes=5)
    rows = analysis.per_class(pred)
    expected = classification_report(pred.labels, pred.predicted, output_dict=True, zero_division=0)
    for i, row in enumerate(rows):
        e = expected[str(i)]
        assert (row.precision, row.recall, row.f1, row.support) == (
            pytest.approx(e["precision"]), pytest.approx(e["recall"]), pytest.approx(e["f1-score"]), e["support"])
    path = analysis.write_per_class_csv(rows, tmp_path / "t.csv")
    read = list(csv.DictReader(open(path)))
    assert [r["class"] for r in read] == pred.class_names
    assert float(read[2]["recall"]) == pytest.approx(expected["2"]["recall"], abs=1e-6)


def test_many_classes_give_a_colour_matrix_and_the_most_confused_pairs():
    pred = _predictions(n=3000, classes=100)
    fig = figures.confusion_figure(analysis.confusion(pred), pred.class_names)
    assert not fig.axes[0].texts  # no unreadable numbers in 10,000 cells
    pairs = analysis.confused_pairs(pred, 10)
    counts = analysis.confusion(pred)
    np.fill_diagonal(counts, 0)
    assert pairs[0].count == counts.max() and [p.count for p in pairs] == sorted((p.count for p in pairs), reverse=True)
    t, p = pred.class_names.index(pairs[0].true), pred.class_names.index(pairs[0].predicted)
    assert counts[t, p] == pairs[0].count and t != p


def test_mistakes_and_unsure_answers_are_ordered_by_confidence():
    pred = _predictions()
    wrong = analysis.confident_mistakes(pred, 5)
    assert (pred.predicted[wrong] != pred.labels[wrong]).all()
    assert list(pred.confidence[wrong]) == sorted(pred.confidence[wrong], reverse=True)
    assert pred.confidence[wrong[0]] == pred.confidence[pred.predicted != pred.labels].max()
    right = analysis.unsure_correct(pred, 5)
    assert (pred.predicted[right] == pred.labels[right]).all()
    assert pred.confidence[right[0]] == pred.confidence[pred.predicted == pred.labels].min()


# ---- conv1 filters ---------------------------------------------------------------------


def test_conv1_picture_has_96_tiles_in_two_towers_each_scaled_to_its_own_range():
    model = get_model("alexnet2012", num_classes=10)
    fig = figures.conv1_figure(model)
    blocks = [ax for ax in fig.axes if ax.images]
    assert [len(ax.images) for ax in blocks] == [48, 48]
    tiles = conv1_tiles(model.conv1.weight)
    shown = [im.get_array() for ax in blocks for im in ax.images]
    assert np.allclose(np.stack(shown), tiles)
    for tile in shown:
        assert tile.min() == pytest.approx(0.0) and tile.max() == pytest.approx(1.0)
    cifar = figures.conv1_figure(get_model("alexnet_cifar"))
    assert [len(ax.images) for ax in cifar.axes if ax.images] == [64]


# ---- Grad-CAM --------------------------------------------------------------------------


def _patches(n: int, g: torch.Generator):
    """Noise with one 8x8 patch; its colour (red or green) is the class, its place is random."""
    x = torch.rand(n, 3, 32, 32, generator=g) * 0.3
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(0, 32 - 8, (n, 2), generator=g)
    for i, (r, c) in enumerate(pos.tolist()):
        x[i, :, r:r + 8, c:c + 8] = 0
        x[i, int(y[i]), r:r + 8, c:c + 8] = 1.0
    return x, y, pos


def test_gradcam_peaks_on_the_patch_that_decides_the_class():
    g = torch.Generator().manual_seed(0)
    model = get_model("alexnet_cifar", num_classes=2, widths=(16, 32, 32, 32, 32), hidden=64, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(60):
        x, y, _ = _patches(16, g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y, pos = _patches(20, torch.Generator().manual_seed(1))
    hits, ratios = 0, []
    for i in range(len(x)):
        ex = grad_cam(model, x[i])
        assert ex.cam.shape == (32, 32) and ex.cam.max() == pytest.approx(1.0) and ex.cam.min() >= 0
        r, c = np.unravel_index(ex.cam.argmax(), ex.cam.shape)
        pr, pc = pos[i].tolist()
        hits += pr - 2 <= r < pr + 10 and pc - 2 <= c < pc + 10  # conv5 is 7x7 here: a cell is ~4.5 px
        inside = np.zeros((32, 32), bool)
        inside[pr:pr + 8, pc:pc + 8] = True
        ratios.append(ex.cam[inside].mean() / max(ex.cam[~inside].mean(), 1e-6))
    assert hits >= 16, hits
    assert np.median(ratios) > 2.0


# ---- notebook safety -------------------------------------------------------------------


def test_no_function_changes_the_matplotlib_backend(tmp_path, monkeypatch):
    import matplotlib

    from alexnet.engine.visuals import conv1_grid, save_figure
    from alexnet.tasks import gradcam

    had_pyplot = "matplotlib.pyplot" in sys.modules
    backend = matplotlib.rcParams._get_backend_or_none()  # None until something resolves it

    def refuse(*args, **kwargs):
        raise AssertionError("matplotlib.use called")

    monkeypatch.setattr(matplotlib, "use", refuse)
    rows = _rows(2)
    save_figure(curves_figure(rows, 3), tmp_path / "c.png")
    compare_figure({"a": rows})
    model = get_model("alexnet_cifar", num_classes=3)
    figures.conv1_figure(model)
    conv1_grid(model)
    figures.confusion_figure(np.eye(3, dtype=int), ["a", "b", "c"])
    figures.per_class_figure(analysis.per_class(_predictions(classes=3)))
    figures.image_grid_figure([Image.new("RGB", (8, 8))], ["x"], "t")
    gradcam.overlay_figure(Image.new("RGB", (8, 8)), np.zeros((8, 8)), "t")
    assert matplotlib.rcParams._get_backend_or_none() == backend
    assert had_pyplot or "matplotlib.pyplot" not in sys.modules
    src = Path(__file__).parents[1] / "src"
    uses = re.compile(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot")
    assert not [p for p in src.rglob("*.py") if uses.search(p.read_text())]


# ---- the commands, on a tiny run ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    write_images(data / "train", 8, seed=1)
    write_images(data / "val", 4, seed=2)
    run = root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "2", "--lr", "0.001", *TINY]) == 0
    return data, run


@pytest.mark.slow
def test_report_page_is_self_contained_and_holds_the_figures(tiny_run, tmp_path):
    data, run = tiny_run
    out = tmp_path / "page" / "report.html"
    assert main(["report", str(run), "--out", str(out), "--workers", "0", "--device", "cpu", "--tta"]) == 0
    page = out.read_text()
    for name in ("curves.png", "confusion.png", "per_class.png", "per_class.csv", "mistakes.png",
                 "unsure_correct.png", "conv1_filters.png"):
        assert (out.parent / name).is_file(), name
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 6
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)  # opens offline
    for text in ("blue", "green", "red", "Confusion matrix", "Most confused pairs", "conv1 filters", "ten-crop",
                 "flip", "Timings", "Config", "Total params", "12</td>"):
        assert text in page, text
    table = list(csv.DictReader(open(out.parent / "per_class.csv")))
    assert [r["class"] for r in table] == ["blue", "green", "red"]
    assert sum(int(r["support"]) for r in table) == 12  # the val images


def test_tensorboard_gets_hparams_config_text_and_conv1_each_epoch(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run = tiny_run
    ea = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "tensors": 0})
    ea.Reload()
    assert [e.step for e in ea.Images("conv1/filters")] and len(ea.Images("conv1/filters")) == 2
    assert "hparams/best_val_top1" in ea.Tags()["scalars"]
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = ea.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.001)
    assert start.hparams["arch"].string_value == "alexnet_cifar"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["hparams/best_val_top1"]
    assert any("config" in tag for tag in ea.Tags()["tensors"])
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    best = ea.Scalars("hparams/best_val_top1")[-1].value
    assert best == pytest.approx(max(float(r["val_top1"]) for r in rows))


def test_plot_overlays_runs_and_redraws_one(tiny_run, tmp_path, capsys):
    _, run = tiny_run
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.csv").write_text((run / "metrics.csv").read_text())
    assert main(["plot", str(run), str(other), "--out", str(tmp_path / "cmp.png")]) == 0
    assert Image.open(tmp_path / "cmp.png").size[0] > 500
    assert main(["plot", str(run), "--out", str(tmp_path / "one.png")]) == 0
    assert (tmp_path / "one.png").is_file()
    assert main(["plot", str(tmp_path / "missing")]) == 1
    assert "metrics.csv: no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_report_writes_counts_that_match(tiny_run, tmp_path):
    data, run = tiny_run
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(data),
                 "--workers", "0", "--device", "cpu", "--report", str(out)]) == 0
    table = list(csv.DictReader(open(out / "per_class.csv")))
    assert [int(r["support"]) for r in table] == [4, 4, 4]
    for name in ("confusion.png", "per_class.png", "mistakes.png", "unsure_correct.png"):
        assert (out / name).is_file()


def test_predict_explain_writes_one_picture_per_readable_image(tiny_run, tmp_path, capsys):
    data, run = tiny_run
    images = sorted((data / "val" / "red").iterdir())[:2]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "cams"
    code = main(["predict", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--device", "cpu",
                 "--explain", str(out), *map(str, images), str(bad)])
    assert code == 1  # the unreadable image
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{p.stem}.gradcam.png" for p in images)
    assert "2 Grad-CAM pictures" in capsys.readouterr().err


def test_report_refuses_bad_inputs_in_one_line(tiny_run, tmp_path, capsys):
    data, run = tiny_run
    assert main(["report", str(tmp_path / "nope")]) == 1
    assert "no such run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 1
    assert "no checkpoints" in capsys.readouterr().err
    other = tmp_path / "other"
    write_images(other, 3, seed=5)
    (other / "purple").mkdir()
    Image.new("RGB", (40, 40)).save(other / "purple" / "a.png")
    assert main(["report", str(run), "--data", str(other), "--workers", "0", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "--data" in err and len(err.strip().splitlines()) == 1


def test_report_escapes_hostile_class_names(tmp_path):
    from alexnet.tasks.html import _table

    html = _table(["class"], [["<script>alert(1)</script>"]])
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_report_into_an_unwritable_place_says_so(tiny_run, tmp_path, capsys):
    _, run = tiny_run
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["report", str(run), "--out", str(blocker / "r.html"), "--workers", "0", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "cannot write there" in err and len(err.strip().splitlines()) == 1


def test_names_with_dollars_and_markup_draw_as_written(tmp_path):
    from alexnet.engine.visuals import save_figure

    names = ["cost $5", "a$b$c", "<b>x</b>", "naïve"]
    pred = _predictions(n=40, classes=4)
    pred.class_names = names
    fig = figures.confusion_figure(analysis.confusion(pred), names)
    save_figure(fig, tmp_path / "c.png")  # drawing parses the labels: an unpaired '$' would raise here
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][:2] == [r"cost \$5", r"a\$b\$c"]
    save_figure(figures.per_class_figure(analysis.per_class(pred)), tmp_path / "p.png")
    save_figure(compare_figure({"run $1": _rows(2)}), tmp_path / "r.png")
