"""Train one curriculum stage: ``python -m megatron_vl.training.train --recipe stage1_projector --model tiny``.

Run it under torchrun (or srun: see ``launch/``); every rank runs the same command. A stage resumes by
itself from its own latest checkpoint; otherwise it starts from the recipe's ``init_from``. SIGTERM / SIGUSR1
make every rank finish its step, save and exit 0; with ``MVL_RUN_OUTCOME`` set, rank 0 then writes how the
run ended for the launcher (``training/run_outcome.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap

from megatron_vl.command_line import run_command
from megatron_vl.config.model import PRESETS
from megatron_vl.config.recipe import STAGES
from megatron_vl.runtime.launcher_watch import watch_launcher
from megatron_vl.runtime.platform import LAYER_BACKEND_ENVIRONMENT, LAYER_BACKEND_SETTINGS
from megatron_vl.runtime.stop_signals import watch_stop_signals
from megatron_vl.third_party_warnings import silence_known_third_party_warnings
from megatron_vl.training.logging_setup import configure_training_logging
from megatron_vl.training.run_config import PATH_ENVIRONMENT
from megatron_vl.training.run_outcome import OUTCOME_ENVIRONMENT, RunOutcome, write_run_outcome

# megatron's checkpoint writer starts a spawn-context multiprocessing Manager, which imports this
# module again: torch, megatron-core and the model are imported in the functions, not here.

logger = logging.getLogger("megatron_vl.training")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m megatron_vl.training.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(f"""\
            paths default to environment variables ({', '.join(PATH_ENVIRONMENT.values())}; see
            megatron_vl/training/run_config.py). Examples:
              torchrun --nproc-per-node 2 -m megatron_vl.training.train --recipe stage1_projector --model tiny
              ... --set checkpoint.save_every=500 --set trains.language_lr=2e-5 --set parallel.tensor_parallel=4
        """),
    )
    parser.add_argument("--recipe", required=True,
                        help=f"stage recipe: one of {', '.join(STAGES)}, a module path, or a .py file defining recipe(model)")
    parser.add_argument("--model", default=os.environ.get("MVL_MODEL", "mimo_vl_7b"), choices=sorted(PRESETS),
                        help="model preset (default: $MVL_MODEL, else mimo_vl_7b)")
    parser.add_argument("--data-root", help="packed datasets root, a path or a URL such as s3://bucket/data "
                                             "(default: $MVL_DATA_ROOT, else ./data)")
    parser.add_argument("--checkpoint-root", help="checkpoint root, one folder per stage (default: $MVL_CHECKPOINT_ROOT)")
    parser.add_argument("--log-root", help="TensorBoard / metrics root, one folder per stage (default: $MVL_LOG_ROOT)")
    parser.add_argument("--tokenizer", help="tokenizer file or folder (default: $MVL_TOKENIZER, else DATA_ROOT/tokenizer)")
    parser.add_argument("--init-from", help="checkpoint folder (or stage name) a new stage starts from, overriding the "
                                            "recipe's; 'none' for random weights")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a recipe field (JSON value), e.g. --set checkpoint.save_every=100; repeatable")
    parser.add_argument("--save-initial", action="store_true",
                        help="a new stage saves iteration 0 (its starting weights and state) before its first step; "
                             "the same as --set checkpoint.save_initial=true")
    parser.add_argument("--layer-backend", choices=LAYER_BACKEND_SETTINGS,
                        default=os.environ.get(LAYER_BACKEND_ENVIRONMENT, "auto"),
                        help=f"transformer_engine, megatron-core's local layers, or auto: Transformer Engine on a GPU "
                             f"(an error if it does not import), local on the CPU (default: ${LAYER_BACKEND_ENVIRONMENT}, "
                             "else auto)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved run config plus its plan (micro-batches per step, pipeline bubble, "
                             "memory per GPU) as JSON and exit; needs no GPU and no tokenizer (the model preset's "
                             "<|image_pad|> id stands in)")
    parser.add_argument("--world-size", type=_positive_int, metavar="N",
                        help="with --dry-run: the ranks the plan is for (default: $WORLD_SIZE, else a SLURM job's "
                             "nodes x ranks per node, else for mimo_vl_7b the #SBATCH --nodes x --gpus-per-node of "
                             "launch/<stage>.sh, else one model replica)")
    parser.add_argument("--dry-run-platform", choices=["gpu", "here"], default="gpu",
                        help="with --dry-run: 'gpu' (default) plans for the cluster's GPU (CUDA, Transformer "
                             "Engine, bf16) when this machine has none; 'here' for this machine's platform")
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of ranks")
    return int(text)


def load_run_recipe(args: argparse.Namespace):
    """The recipe of ``args`` with its overrides applied, and the run's paths."""
    from megatron_vl.config.overrides import apply_overrides
    from megatron_vl.config.recipe import load_recipe
    from megatron_vl.training.run_config import RunPaths

    recipe = apply_overrides(load_recipe(args.recipe, args.model), args.set)
    if args.save_initial:
        recipe = apply_overrides(recipe, ["checkpoint.save_initial=true"])
    if args.init_from is not None:
        init_from = None if args.init_from.lower() == "none" else args.init_from
        recipe = apply_overrides(recipe, [f"init_from={json.dumps(init_from)}"])
    paths = RunPaths.from_environment(
        data_root=args.data_root, checkpoint_root=args.checkpoint_root, log_root=args.log_root, tokenizer=args.tokenizer
    )
    return recipe, paths


def build_run(args: argparse.Namespace, platform):
    """The resolved ``RunConfig`` on ``platform`` and the tokenizer."""
    from megatron_vl.tokenizer import load_tokenizer
    from megatron_vl.training.run_config import resolve_run

    recipe, paths = load_run_recipe(args)
    tokenizer = load_tokenizer(paths.tokenizer)
    return resolve_run(recipe, paths, tokenizer, platform), tokenizer


def train(run, tokenizer) -> RunOutcome:
    """Train (or resume) the ``RunConfig``'s stage on the initialised process group; returns how the run ended."""
    import torch.distributed as dist

    from megatron_vl.config.serialization import config_to_dict
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.training.build import build_trainer

    recipe = run.recipe
    pgs = initialize_model_parallel(recipe.parallel)
    set_seed(recipe.seed, pgs)
    trainer, checkpointer = build_trainer(run, tokenizer, pgs)
    resumed = checkpointer.resume(trainer)
    if not resumed:
        if run.init_from is not None:
            checkpointer.load_weights(trainer, run.init_from)
        else:
            logger.info("new stage from random weights (seed %d)", recipe.seed)
    try:
        if not trainer.done:
            if dist.get_rank() == 0:
                os.makedirs(run.log_dir, exist_ok=True)
                with open(os.path.join(run.log_dir, "config.json"), "w") as file:
                    json.dump(config_to_dict(run), file, indent=2)
            if not resumed and recipe.checkpoint.save_initial:
                checkpointer.save(trainer)
            logger.info(
                "stage %s: %s on %d ranks (TP %d, PP %d, DP %d), iterations %d -> %d, %d micro-batches of %d x %d "
                "tokens per rank per step", recipe.name, recipe.model, dist.get_world_size(), pgs.tp.size(),
                pgs.pp.size(), pgs.dp.size(), trainer.state.iteration, run.train_iterations,
                trainer.micro_batches_per_step, recipe.micro_batch_size, recipe.seq_len,
            )
            trainer.run()
    finally:
        checkpointer.close()
    iteration = trainer.state.iteration
    return RunOutcome(
        stage=recipe.name,
        ending="stopped" if trainer.stop_reason else "complete",
        reason=trainer.stop_reason,
        iteration=iteration,
        train_iterations=run.train_iterations,
        checkpoint=checkpointer.published(iteration),
    )


def run(args: argparse.Namespace) -> int:
    """Parse, build, run, close: the stage of ``args`` on the platform detected here."""
    if args.world_size is not None and not args.dry_run:
        raise ValueError("--world-size only sets the world size of the --dry-run plan; a run takes torchrun's")
    if not args.dry_run:
        # First, before torch starts threads or processes: they inherit the blocked signals.
        watch_stop_signals()
        watch_launcher()
    silence_known_third_party_warnings()
    configure_training_logging()
    from megatron_vl.runtime.platform import detect_platform

    if args.dry_run:
        from megatron_vl.training.dry_run import print_dry_run

        return print_dry_run(args, *load_run_recipe(args))
    platform = detect_platform(args.layer_backend)
    run_config, tokenizer = build_run(args, platform)
    import torch.distributed as dist

    from megatron_vl.runtime.distributed import init_distributed
    from megatron_vl.runtime.model_parallel import destroy_model_parallel

    logger.info("platform: %s (layer backend setting: %s)", platform.describe(), args.layer_backend)
    init_distributed(platform)
    try:
        outcome = train(run_config, tokenizer)
        if dist.get_rank() == 0 and os.environ.get(OUTCOME_ENVIRONMENT):
            write_run_outcome(os.environ[OUTCOME_ENVIRONMENT], outcome)
    finally:
        destroy_model_parallel()
        dist.destroy_process_group()
    logger.info("%s; metrics in %s", outcome.describe(), run_config.log_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
