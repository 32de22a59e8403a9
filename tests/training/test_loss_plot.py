import json

from PIL import Image

from megatron_vl.training import loss_plot
from megatron_vl.training.metrics_file import METRICS_FILE


def _write_metrics(directory, losses, evals=()):
    directory.mkdir(parents=True)
    lines = [{"event": "train", "iteration": i + 1, "loss": loss} for i, loss in enumerate(losses)]
    lines += [{"event": "eval", "iteration": iteration, "loss": loss} for iteration, loss in evals]
    (directory / METRICS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_plots_stages_in_curriculum_order(tmp_path, capsys):
    _write_metrics(tmp_path / "stage2_vit", [3.0, 2.5], evals=[(2, 2.6)])
    _write_metrics(tmp_path / "stage1_projector", [6.0, 5.0, 4.0])
    _write_metrics(tmp_path / "stage0_language", [8.0, 7.0])
    out = tmp_path / "plot" / "losses.png"
    assert loss_plot.main(["--log-root", str(tmp_path), "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 600
    curves = loss_plot.stage_curves(tmp_path)
    assert [curve["stage"] for curve in curves] == ["stage0_language", "stage1_projector", "stage2_vit"]
    assert curves[2]["eval"] == [(2, 2.6)]
    table = capsys.readouterr().out
    assert "stage1_projector" in table and "6.0000" in table and "4.0000" in table


def test_no_metrics_is_a_clear_error(tmp_path, capsys):
    assert loss_plot.main(["--log-root", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "pass the --log-root" in capsys.readouterr().err


def test_benchmark_scores_get_a_panel_and_the_last_ones_a_column(tmp_path, capsys):
    _write_metrics(tmp_path / "stage1_projector", [6.0, 5.0, 4.0, 3.5])
    _write_metrics(tmp_path / "stage2_vit", [3.0, 2.5])
    records = [
        ("stage1_projector", 2, {"captions/cider": 0.125}), ("stage1_projector", 4, {"captions/cider": 0.25}),
        ("stage2_vit", 2, {"captions/cider": 0.5, "shapes/iou@0.5": 0.75}),
    ]
    for stage, iteration, scores in records:
        with open(tmp_path / stage / METRICS_FILE, "a") as file:
            file.write(json.dumps({"event": "benchmark", "iteration": iteration, "scores": scores, "seconds": 1.0}) + "\n")
    out = tmp_path / "losses.png"
    assert loss_plot.main(["--log-root", str(tmp_path), "--out", str(out)]) == 0
    curves = loss_plot.stage_curves(tmp_path)
    assert curves[0]["benchmark"] == [(2, {"captions/cider": 0.125}), (4, {"captions/cider": 0.25})]
    assert loss_plot.stage_offsets(curves) == [0, 4]
    assert loss_plot.score_names(curves) == ["captions/cider", "shapes/iou@0.5"]
    without = tmp_path / "without"
    _write_metrics(without / "stage1_projector", [6.0, 5.0])
    loss_plot.main(["--log-root", str(without), "--out", str(tmp_path / "plain.png")])
    assert Image.open(out).size[0] > Image.open(tmp_path / "plain.png").size[0]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("last benchmark scores")
    assert lines[1].endswith("captions/cider 0.2500 (iter 4)")
    assert lines[2].endswith("captions/cider 0.5000  shapes/iou@0.5 0.7500 (iter 2)")
    assert "benchmark" not in lines[4]
