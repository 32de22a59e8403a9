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
    out = tmp_path / "plot" / "losses.png"
    assert loss_plot.main(["--log-root", str(tmp_path), "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 600
    curves = loss_plot.stage_curves(tmp_path)
    assert [curve["stage"] for curve in curves] == ["stage1_projector", "stage2_vit"]
    assert curves[1]["eval"] == [(2, 2.6)]
    table = capsys.readouterr().out
    assert "stage1_projector" in table and "6.0000" in table and "4.0000" in table


def test_no_metrics_is_a_clear_error(tmp_path, capsys):
    assert loss_plot.main(["--log-root", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "pass the --log-root" in capsys.readouterr().err
