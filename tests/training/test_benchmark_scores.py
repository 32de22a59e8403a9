"""The benchmark hook's pieces on 2 gloo ranks, without training: when it scores, that every rank logs rank 0's
scores, that a failure on rank 0 reaches every rank, and that bad files fail at the start. The hook on a real run
(export + evaluate_folder of the saved checkpoint) is in test_train_runs.py."""

import types

import pytest

from megatron_vl.config.training import BenchmarkSettings
from megatron_vl.training.benchmark_scores import benchmark_values
from tests.multirank import run_ranks


class StubCheckpointer:
    def __init__(self):
        self.waits = 0

    def wait(self):
        self.waits += 1


def _hook_on_ranks(fail_at: int | None) -> dict:
    """Steps 1-5 of a 5-step stage scored every 2; rank 0's scores are its iteration (it fails at ``fail_at``), the
    other ranks' would be -1: what every rank logs."""
    import torch.distributed as dist

    from megatron_vl.training.benchmark_scores import BenchmarkScores, scoring_group

    settings = BenchmarkSettings(every=2, files=("captions.jsonl",))
    checkpointer = StubCheckpointer()
    hook = BenchmarkScores(checkpointer, settings, ("/x/captions.jsonl",), group=scoring_group(), results_dir="/unused",
                           on_gpu=False, bf16=False)

    def score(iteration):
        if iteration == fail_at:
            raise ValueError("the generator ran out of memory")
        return {"scores": {"captions/cider": float(iteration if dist.get_rank() == 0 else -1)}, "seconds": 1.0}

    hook.score = score
    logged = []
    trainer = types.SimpleNamespace(train_iterations=5, stop_reason=None, done=False,
                                    log_metrics=lambda event, iteration, values: logged.append((event, iteration, values)))
    error = None
    try:
        for iteration in range(1, 6):
            trainer.done = iteration == 5
            trainer.stop_reason = "SIGTERM received" if iteration == 4 else None
            hook.after_step(trainer, types.SimpleNamespace(iteration=iteration))
    except Exception as raised:
        error = f"{type(raised).__name__}: {raised}"
    return {"logged": logged, "waits": checkpointer.waits, "error": error}


@pytest.fixture(scope="module")
def ranks():
    return {fail_at: run_ranks(_hook_on_ranks, 2, fail_at) for fail_at in (None, 2)}


def test_every_rank_logs_rank_0s_scores_at_multiples_and_at_the_end(ranks):
    for rank in ranks[None]:
        assert rank["error"] is None
        # Iteration 4 is a multiple, but the run was stopping on a signal: no scores.
        assert [(event, iteration) for event, iteration, _ in rank["logged"]] == [("benchmark", 2), ("benchmark", 5)]
        assert [values["scores"]["captions/cider"] for _, _, values in rank["logged"]] == [2.0, 5.0]
        assert rank["waits"] == 2


def test_a_failure_on_rank_0_is_raised_on_every_rank(ranks):
    rank0, rank1 = ranks[2]
    assert rank0["error"] == "ValueError: the generator ran out of memory" and rank0["logged"] == []
    assert rank1["error"] == "RuntimeError: rank 0 failed while scoring the benchmarks: ValueError: the generator ran out of memory"


def _check(files: tuple[str, ...], metrics=()) -> str | None:
    from megatron_vl.training.benchmark_scores import check_benchmark_files, scoring_group

    settings = BenchmarkSettings(every=2, files=tuple(f"given/{i}.jsonl" for i in range(len(files))), metrics=metrics)
    try:
        check_benchmark_files(settings, files, scoring_group())
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def test_missing_or_malformed_files_fail_at_the_start_on_every_rank(tmp_path):
    from PIL import Image

    from tests.checkpoints_tools.benchmark_scoring.test_jsonl_benchmarks import write_jsonl

    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    captions = str(write_jsonl(tmp_path / "captions.jsonl", [{"image": "a.png", "captions": ["a black picture"]}]))
    missing = str(tmp_path / "missing.jsonl")
    assert run_ranks(_check, 2, (captions,)) == [None, None]
    for rank, error in enumerate(run_ranks(_check, 2, (captions, missing))):
        text = f"benchmark file given/1.jsonl ({missing}) does not exist; benchmarks.files are absolute paths or relative to the data root"
        assert error == ("ValueError: " if rank == 0 else "RuntimeError: rank 0 failed while scoring the benchmarks: ValueError: ") + text + \
            ": fix the path, or turn the benchmarks off with --set benchmarks.every=null"
    (wrong_metric,) = run_ranks(_check, 1, (captions,), ("anls",))
    assert "metric 'anls' does not apply to a .jsonl file" in wrong_metric


def test_scores_are_named_by_file_and_metric():
    results = {"files": [
        {"path": "/b/captions.jsonl", "metric": "cider", "rows": 3, "score": 0.5},
        {"path": "/b/refcoco_val.jsonl", "metric": "grounding", "rows": 4, "score": 0.25, "mean_iou": 0.4},
        {"path": "/b/MMBench_DEV_EN.tsv", "metric": "multiple_choice", "rows": 5, "score": 0.6},
    ]}
    assert benchmark_values(results, 12.5) == {
        "scores": {"captions/cider": 0.5, "refcoco_val/iou@0.5": 0.25, "refcoco_val/mean_iou": 0.4,
                   "MMBench_DEV_EN/multiple_choice": 0.6},
        "rows": {"captions": 3, "refcoco_val": 4, "MMBench_DEV_EN": 5},
        "seconds": 12.5,
    }
