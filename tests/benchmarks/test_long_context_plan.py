"""The long-context layout table: the 7B's stage4_32k recipe trains in the layout the table marks fastest within
80 GiB at 32K, and the 128K ``--set``s the recipe documents give the layout it marks fastest at 131072."""

from __future__ import annotations

import re
import types

from benchmarks import long_context_plan
from megatron_vl.config.overrides import apply_overrides
from megatron_vl.config.recipe import load_recipe
from megatron_vl.config.recipes import stage4_32k

ARGS = types.SimpleNamespace(world_size=256, tokens_per_step=64 * 32768, gpu="NVIDIA H100", gpu_memory_gib=80.0,
                             headroom=0.8, tensor_parallel=[2, 4], context_parallel=[1, 2, 4, 8])


def _fastest(seq_len: int) -> long_context_plan.LayoutPlan:
    plans, _ = long_context_plan.plan_grid(seq_len, ARGS)
    return long_context_plan.fastest_fitting(plans)


def _layout(recipe) -> tuple:
    recompute = next(name for name, settings in long_context_plan.RECOMPUTE.items() if settings == recipe.recompute)
    return recipe.seq_len, recipe.parallel.tensor_parallel, recipe.parallel.context_parallel, recompute


def _as_layout(plan) -> tuple:
    return plan.seq_len, plan.tensor_parallel, plan.context_parallel, plan.recompute


def test_stage4_trains_in_the_fastest_layout_that_fits_at_32k():
    recipe = load_recipe("stage4_32k", "mimo_vl_7b")
    best = _fastest(32768)
    assert _layout(recipe) == _as_layout(best) == (32768, 4, 2, "none")
    assert recipe.parallel.sequence_parallel and best.fits
    today = long_context_plan.plan_layout(32768, 4, 1, "full", ARGS)
    assert today.fits and today.step_seconds > 1.3 * best.step_seconds


def test_the_documented_128k_sets_give_the_fastest_layout_that_fits_at_128k():
    recipe = load_recipe("stage4_32k", "mimo_vl_7b")
    sets = re.findall(r"--set (\S+?)[`\s]", stage4_32k.__doc__)
    long = apply_overrides(recipe, sets)
    best = _fastest(131072)
    assert _layout(long) == _as_layout(best) == (131072, 4, 8, "none")
    assert long.tokens_per_iteration == recipe.tokens_per_iteration and best.fits
    # Without CP no layout of 256 GPUs takes 16 rows of 128K a step.
    assert isinstance(long_context_plan.plan_layout(131072, 4, 1, "full", ARGS), str)


def test_a_layout_the_world_cannot_take_says_why():
    reason = long_context_plan.plan_layout(131072, 2, 1, "none", ARGS)
    assert "global_batch_size=16 is not divisible by data-parallel size 128" in reason


def test_the_table_marks_one_fastest_layout_per_length(capsys):
    long_context_plan.main(["--seq-lens", "32768", "--tensor-parallel", "4", "--context-parallel", "1", "2"])
    table = capsys.readouterr().out
    assert table.count("**fastest**") == 1
    assert "| 32768 | 4 | 2 | none | 32 | 2 | 39.2 | 51.1 | 1.470 | 5,572 | yes **fastest** |" in table
    assert "| 32768 | 4 | 1 | full | 64 | 1 | 11.5 | 23.5 | 1.935 | 4,235 | yes |" in table
