"""Saving and loading training checkpoints with megatron-core ``dist_checkpointing``, atomically.

A save writes ``iter_N.partial/`` (model, distributed optimizer state in a resharding-capable format,
LR scheduler, train state, loader state, every rank's RNG), then the run record and the tokenizer copy;
once every rank is done, rank 0 renames it to ``iter_N/``, points the ``latest`` marker at it and only
then deletes checkpoints beyond the newest ``keep_last``. A crash at any point leaves the previous
checkpoint loadable and named by the marker (see ``checkpoint_files``). With ``async_save`` the tensors
are written in the background and the same finalisation runs when every rank's write is done.

Loading: a run whose own checkpoint folder has a ``latest`` marker resumes everything, also at another
TP / PP / CP / DP layout (RNG states are restored only at the same layout); a new stage takes only the
model weights of ``init_from`` and starts with a fresh optimizer at iteration 0. Either loads checkpoints of
either layer backend (``checkpoint_loading``).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import torch.distributed as dist
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.mapping import ShardedObject
from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue
from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper
from megatron.core.process_groups_config import ProcessGroupCollection

from megatron_vl.config.model import saved_model_fields
from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.serialization import config_to_dict
from megatron_vl.config.training import CheckpointSettings
from megatron_vl.files import PARTIAL_DIRECTORY_SUFFIX, publish_directory
from megatron_vl.tokenizer import Tokenizer
from megatron_vl.training import checkpoint_files
from megatron_vl.training.checkpoint_loading import load_checkpoint, load_model_state
from megatron_vl.training.rng_state import capture_rng_state, restore_rng_state
from megatron_vl.training.run_config import RunConfig
from megatron_vl.training.trainer import Hook, StepResult, Trainer, TrainState

logger = logging.getLogger(__name__)

OPTIMIZER_FORMAT_KEY = "distrib_optim_sharding_type"


class Checkpointer:
    """Saves and loads one stage's checkpoints under ``run.checkpoint_dir``."""

    def __init__(
        self,
        run: RunConfig,
        tokenizer: Tokenizer,
        pg_collection: ProcessGroupCollection,
        settings: CheckpointSettings,
    ) -> None:
        self.run = run
        self.root = Path(run.checkpoint_dir)
        self.tokenizer = tokenizer
        self.pg_collection = pg_collection
        self.settings = settings
        self.optimizer_format = run.recipe.optimizer.checkpoint_format
        self.async_queue = AsyncCallsQueue() if settings.async_save else None
        self.last_saved: int | None = None
        self._strategy = FullyParallelSaveStrategyWrapper(
            get_default_save_sharded_strategy(), pg_collection.dp_cp, do_cache_distribution=True
        )
        if dist.get_rank() == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            stale = [path for path in self.root.iterdir() if path.name.endswith(PARTIAL_DIRECTORY_SUFFIX)]
            for path in stale:
                logger.warning("removing %s: a save that did not finish (the run was killed while saving)", path)
                shutil.rmtree(path)
        dist.barrier()

    # ---- saving -------------------------------------------------------------------------------

    def save(self, trainer: Trainer) -> None:
        """Checkpoint the trainer's current iteration (a collective: every rank calls it)."""
        iteration = trainer.state.iteration
        if iteration == self.last_saved:
            return
        self.wait()
        partial = checkpoint_files.partial_dir(self.root, iteration)
        if dist.get_rank() == 0:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        dist.barrier()
        state = self._state_dict(
            trainer, loading=False, optimizer_format=self.optimizer_format, with_rng=True, with_optimizer=iteration > 0
        )
        record = self._run_record(trainer.state)
        request = dist_checkpointing.save(
            state,
            str(partial),
            sharded_strategy=self._strategy,
            async_sharded_save=self.async_queue is not None,
            content_metadata={OPTIMIZER_FORMAT_KEY: self.optimizer_format},
        )
        self.last_saved = iteration
        if self.async_queue is None:
            self._publish(iteration, record)
        else:
            request.add_finalize_fn(lambda: self._publish(iteration, record))
            self.async_queue.schedule_async_request(request)
            logger.info("checkpoint of iteration %d is being written in the background", iteration)

    def poll(self) -> None:
        """Finalise background saves that every rank has finished (a collective; call once per step)."""
        if self.async_queue is not None:
            self.async_queue.maybe_finalize_async_calls(blocking=False)

    def wait(self) -> None:
        """Block until every background save is written and published."""
        if self.async_queue is not None:
            self.async_queue.maybe_finalize_async_calls(blocking=True)

    def close(self) -> None:
        self.wait()
        if self.async_queue is not None:
            self.async_queue.close()

    def published(self, iteration: int) -> str | None:
        """The complete checkpoint of ``iteration`` that the ``latest`` marker names, or None (after ``wait``)."""
        if checkpoint_files.read_latest_iteration(self.root) != iteration:
            return None
        directory = checkpoint_files.iteration_dir(self.root, iteration)
        return str(directory) if iteration in checkpoint_files.complete_iterations(self.root) else None

    def _publish(self, iteration: int, record: dict) -> None:
        """Every rank's part is written: rank 0 completes the checkpoint and moves the marker to it."""
        partial = checkpoint_files.partial_dir(self.root, iteration)
        dist.barrier()
        if dist.get_rank() == 0:
            self.tokenizer.save_hf(str(partial / checkpoint_files.TOKENIZER_DIR))
            checkpoint_files.write_run_record(partial, record)
            final = checkpoint_files.iteration_dir(self.root, iteration)
            if final.exists():
                # Left by a crash between the rename and the marker of an earlier save of this iteration.
                shutil.rmtree(final)
            publish_directory(partial, final)
            checkpoint_files.write_latest_iteration(self.root, iteration)
            logger.info("saved checkpoint %s", final)
            self._delete_old(iteration)
        dist.barrier()

    def _delete_old(self, newest: int) -> None:
        """Keep the newest ``keep_last`` checkpoints, and iteration 0 (a stage's starting point, ``save_initial``)."""
        if self.settings.keep_last is None:
            return
        complete = [it for it in checkpoint_files.complete_iterations(self.root) if 0 < it <= newest]
        for iteration in complete[: -self.settings.keep_last]:
            shutil.rmtree(checkpoint_files.iteration_dir(self.root, iteration))
            logger.info("deleted checkpoint of iteration %d (keeping the last %d)", iteration, self.settings.keep_last)

    def _run_record(self, state: TrainState) -> dict:
        run = self.run
        return checkpoint_files.run_record(
            model=run.model,
            parallel=run.recipe.parallel,
            iteration=state.iteration,
            image_settings=run.data.image_settings,
            tokenizer_fingerprint=self.tokenizer.fingerprint,
            written_by="training",
            world_size=dist.get_world_size(),
            stage=run.recipe.name,
            consumed_tokens=state.consumed_tokens,
            loss_tokens_per_kind=state.loss_tokens_per_kind,
            optimizer_format=self.optimizer_format,
            run=config_to_dict(run),
        )

    def _state_dict(
        self, trainer: Trainer, *, loading: bool, optimizer_format: str, with_rng: bool, with_optimizer: bool
    ) -> dict:
        """What a checkpoint holds. Iteration 0 (``save_initial``) has no optimizer state: the optimizer has not
        stepped, its moments do not exist yet, and a run resumed there starts it fresh, as the stage did."""
        trainable = trainer.trainable
        model = trainable.model.sharded_state_dict()
        state = {"model": model}
        if with_optimizer:
            state["optimizer"] = trainable.optimizer.sharded_state_dict(
                model, is_loading=loading, metadata={OPTIMIZER_FORMAT_KEY: optimizer_format}
            )
        state |= {
            "scheduler": trainable.scheduler.state_dict(),
            "train_state": dataclasses.asdict(trainer.state),
            "loader": None if loading else trainer.loader.state_dict(),
        }
        if with_rng:
            # Every rank's own RNG state; the CP coordinate only under CP, so that checkpoints saved before CP
            # existed keep their shard names.
            groups = [self.pg_collection.pp, self.pg_collection.tp, self.pg_collection.cp, self.pg_collection.dp]
            if self.pg_collection.cp.size() == 1:
                groups.pop(2)
            state["rng"] = ShardedObject(
                "rng_state",
                capture_rng_state(with_cuda=self.run.platform.on_gpu),
                tuple(group.size() for group in groups),
                tuple(group.rank() for group in groups),
                replica_id=0,
            )
        return state

    # ---- loading ------------------------------------------------------------------------------

    def resume(self, trainer: Trainer) -> bool:
        """Load everything from this stage's latest checkpoint; False when the stage has none yet."""
        if checkpoint_files.read_latest_iteration(self.root) is None:
            return False
        directory, iteration = checkpoint_files.resolve_checkpoint(self.root)
        record = checkpoint_files.read_run_record(directory)
        recipe = self.run.recipe
        saved_trains = record["run"]["recipe"]["trains"]
        if saved_trains != config_to_dict(recipe.trains):
            raise ValueError(
                f"{directory} was trained with {saved_trains}, this run's recipe trains {config_to_dict(recipe.trains)}; "
                f"the optimizer state does not carry over: keep the recipe's trains, or start a new stage that "
                f"sets init_from={str(self.root)!r}"
            )
        optimizer_format = record.get("optimizer_format", self.optimizer_format)
        # Records written before a ParallelConfig field existed read with its default.
        saved_parallel = {**config_to_dict(ParallelConfig()), **record["parallel"]}
        same_layout = saved_parallel == config_to_dict(recipe.parallel) and record["world_size"] == dist.get_world_size()
        if optimizer_format == "dp_reshardable" and saved_parallel != config_to_dict(recipe.parallel):
            raise ValueError(
                f"{directory} holds the optimizer state in the dp_reshardable format, which loads only at the "
                f"tensor / pipeline layout it was saved with ({record['parallel']}); resume with that layout, or "
                "save with optimizer.checkpoint_format=fully_reshardable"
            )
        self._check_model(record, directory)
        if iteration > 0:
            self._check_optimizer_kind(directory)
        state = self._state_dict(
            trainer, loading=True, optimizer_format=optimizer_format, with_rng=same_layout, with_optimizer=iteration > 0
        )
        loaded = load_checkpoint(state, directory)
        trainable = trainer.trainable
        load_model_state(trainable.model, loaded["model"])
        if iteration > 0:
            trainable.optimizer.load_state_dict(loaded["optimizer"])
        else:
            # A fresh optimizer's fp32 main parameters were copied from the random weights: copy them again.
            trainable.optimizer.reload_model_params()
        trainable.scheduler.load_state_dict(loaded["scheduler"])
        trainer.state = TrainState(**loaded["train_state"])
        trainer.loader.load_state_dict(loaded["loader"])
        if same_layout:
            restore_rng_state(loaded["rng"], with_cuda=self.run.platform.on_gpu)
        else:
            logger.warning(
                "resuming at another layout (saved: %s on %d ranks): RNG states start afresh",
                record["parallel"], record["world_size"],
            )
        self.last_saved = iteration
        logger.info("resumed from %s at iteration %d", directory, iteration)
        return True

    def load_weights(self, trainer: Trainer, init_from: str) -> int:
        """A new stage: the model weights of ``init_from``'s latest checkpoint, nothing else; returns its iteration."""
        directory, iteration = checkpoint_files.resolve_checkpoint(init_from)
        record = checkpoint_files.read_run_record(directory)
        self._check_model(record, directory)
        trainable = trainer.trainable
        loaded = load_checkpoint({"model": trainable.model.sharded_state_dict()}, directory)
        load_model_state(trainable.model, loaded["model"])
        # The optimizer's fp32 main parameters were copied from the random weights: copy them again.
        trainable.optimizer.reload_model_params()
        logger.info("new stage: weights from %s (iteration %d); fresh optimizer, iteration 0", directory, iteration)
        return iteration

    def _check_optimizer_kind(self, directory: Path) -> None:
        """megatron's distributed and non-distributed optimizers save their state in forms neither loads from
        the other (checkpoints written on CPU before the distributed optimizer ran there hold the latter)."""
        saved = "param_state_sharding_type" in dist_checkpointing.load_common_state_dict(str(directory))["optimizer"]
        wanted = self.run.recipe.optimizer.distributed
        if saved != wanted:
            kind = "distributed" if saved else "non-distributed"
            raise ValueError(
                f"{directory} holds the state of megatron's {kind} optimizer, which this run's "
                f"optimizer.distributed={str(wanted).lower()} cannot load; resume with --set "
                f"optimizer.distributed={str(saved).lower()}, "
                f"or start a new stage with init_from={str(self.root)!r} (its weights, a fresh optimizer)"
            )

    def _check_model(self, record: dict, directory: Path) -> None:
        saved_fingerprint = record.get("tokenizer_fingerprint")
        if saved_fingerprint is not None and saved_fingerprint != self.tokenizer.fingerprint:
            raise ValueError(
                f"{directory} was trained with tokenizer {saved_fingerprint[:12]}..., this run uses "
                f"{self.run.paths.tokenizer} ({self.tokenizer.fingerprint[:12]}...); use the checkpoint's tokenizer "
                f"({directory / checkpoint_files.TOKENIZER_DIR}) and data packed with it"
            )
        # Precision is the one model field a run may change when it loads a checkpoint.
        saved_model = saved_model_fields(record["model"], video_pad_id=self.tokenizer.video_pad_id)
        saved = {k: v for k, v in saved_model.items() if k != "dtype"}
        current = {k: v for k, v in config_to_dict(self.run.model).items() if k != "dtype"}
        if saved != current:
            different = sorted(key for key in current if saved.get(key) != current[key])
            raise ValueError(
                f"{directory} holds a different model: {different} differ from this run's {self.run.recipe.model} "
                "config; use the --model the checkpoint was trained with"
            )


class CheckpointHook(Hook):
    """Saves every ``save_every`` iterations, at the end of the stage, and when a hook stopped the run; the last
    hook of a step (priority 500), so that the step is complete and a stop is known when it decides."""

    priority = 500

    def __init__(self, checkpointer: Checkpointer, save_every: int) -> None:
        self.checkpointer = checkpointer
        self.save_every = save_every

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        self.checkpointer.poll()
        if result.iteration % self.save_every == 0 or trainer.done or trainer.stop_reason is not None:
            self.checkpointer.save(trainer)

    def on_end(self, trainer: Trainer) -> None:
        self.checkpointer.wait()
