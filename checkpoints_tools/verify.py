"""Check an exported folder against the dist checkpoint it came from: same image and text, same logits.

    python -m checkpoints_tools.verify --ckpt runs/stage3/checkpoints --hf hf/stage3 [--per-layer] [--threshold 1e-3]

Draws a picture, builds one chat turn about it with the folder's processor (chat template, image processor;
ours, with a note, where the folder has none),
runs megatron-vl's ``VLModel`` loaded by megatron-core's ``dist_checkpointing.load`` (TP=1, PP=1, float32; either layer backend's checkpoints)
and transformers' ``Qwen2_5_VLForConditionalGeneration.from_pretrained`` (float32; it computes its own M-RoPE
positions, ours come from ``megatron_vl.data.mrope``), and prints the largest absolute logit difference;
``--per-layer`` adds the projector output, every LLM layer's output and the final norm. Exits 0 when the logit
difference is at most ``--threshold``, 1 otherwise, 2 on a usage error. Both models are held in memory in
float32: the 7B shape needs about 70 GB of RAM (a GPU is used when present).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from megatron_vl.command_line import run_command
from checkpoints_tools.hf_inputs import draw_image, multimodal_inputs
from checkpoints_tools.run_checkpoint import RunCheckpoint, add_checkpoint_arguments, open_run_checkpoint


def load_our_model(run: RunCheckpoint, platform):
    """``VLModel`` at TP=1 PP=1 in float32, loaded from the dist checkpoint by megatron-core itself."""
    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.models import VLModel
    from megatron_vl.runtime.distributed import init_single_process
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed
    from megatron_vl.training.checkpoint_loading import load_checkpoint, load_model_state

    init_single_process(platform)
    parallel = ParallelConfig()
    pgs = initialize_model_parallel(parallel)
    set_seed(0, pgs)
    config = dataclasses.replace(run.config, dtype="float32")
    model = VLModel(config, parallel=parallel, pg_collection=pgs, platform=platform)
    loaded = load_checkpoint({"model": model.sharded_state_dict()}, run.directory)
    load_model_state(model, loaded["model"])
    return model.eval()


def _first(output) -> torch.Tensor:
    """The hidden states of a module's output: a tensor, a (hidden, ...) tuple, or HF's ViT output, whose merged
    features (in image order; the merger itself sees them in window order) are ``pooler_output``."""
    if hasattr(output, "pooler_output"):
        return output.pooler_output
    return output[0] if isinstance(output, tuple) else output


def _record_outputs(modules: dict[str, torch.nn.Module], store: dict[str, torch.Tensor]) -> None:
    """Keep each module's output, as [tokens, features] in float32, under its name."""

    def hook(name):
        def keep(_module, _inputs, output) -> None:
            tensor = _first(output).detach().float()
            store[name] = tensor.reshape(-1, tensor.shape[-1])

        return keep

    for name, module in modules.items():
        module.register_forward_hook(hook(name))


def compare(run: RunCheckpoint, hf_dir, *, width: int, height: int, seed: int, prompt: str) -> dict:
    """Both models on one drawn image and chat turn: max |difference| of the logits and of each recorded layer."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from megatron_vl.data.mrope import mrope_position_ids
    from megatron_vl.progress import quiet_transformers_bars
    from megatron_vl.runtime.platform import detect_platform

    quiet_transformers_bars()
    inputs, route = multimodal_inputs(
        hf_dir, draw_image(width, height, seed), prompt, fallback_image_settings=run.image_settings
    )
    platform = detect_platform()
    ours = load_our_model(run, platform)
    theirs = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    device = torch.device(platform.device)
    theirs.to(device)
    inputs = {key: value.to(device) for key, value in inputs.items()}

    layers = run.config.language.num_layers
    our_outputs, their_outputs = {}, {}
    _record_outputs({"projector": ours.vision_projection, **{
        f"llm layer {i}": ours.language_model.decoder.layers[i] for i in range(layers)
    }, "final norm": ours.language_model.decoder.final_layernorm}, our_outputs)
    _record_outputs({"projector": theirs.model.visual, **{
        f"llm layer {i}": theirs.model.language_model.layers[i] for i in range(layers)
    }, "final norm": theirs.model.language_model.norm}, their_outputs)

    tokenizer = run.tokenizer
    positions = mrope_position_ids(
        inputs["input_ids"][0].cpu().numpy(), inputs["image_grid_thw"].cpu().numpy(),
        image_pad_id=tokenizer.image_pad_id, vision_start_id=tokenizer.vision_start_id,
        spatial_merge_size=run.config.vision.spatial_merge_size,
    )
    with torch.no_grad():
        our_logits = ours(
            inputs["input_ids"], torch.from_numpy(positions).long()[:, None].to(device),
            pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"],
        )[0].float()
        their_logits = theirs(**inputs).logits[0].float()
    layers_diff = {name: float((our_outputs[name] - their_outputs[name]).abs().max()) for name in their_outputs}
    return {
        "route": route,
        "tokens": int(inputs["input_ids"].shape[1]),
        "image_tokens": int((inputs["input_ids"] == tokenizer.image_pad_id).sum()),
        "logits": float((our_logits - their_logits).abs().max()),
        "logit_scale": float(their_logits.abs().max()),
        "layers": layers_diff,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m checkpoints_tools.verify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_checkpoint_arguments(parser)
    parser.add_argument("--hf", required=True, help="the exported Hugging Face folder")
    parser.add_argument("--threshold", type=float, default=1e-3, help="largest allowed |logit difference| (default 1e-3)")
    parser.add_argument("--per-layer", action="store_true", help="also print the difference after every layer")
    parser.add_argument("--image-size", default="308x224", help="WIDTHxHEIGHT of the drawn image (default 308x224)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn image (default 0)")
    parser.add_argument("--prompt", default="Describe the picture.", help="the user's text after the image")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        width, height = (int(side) for side in args.image_size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--image-size {args.image_size!r}: write WIDTHxHEIGHT, e.g. 308x224") from None
    checkpoint = open_run_checkpoint(args.ckpt, args.iteration)
    result = compare(checkpoint, args.hf, width=width, height=height, seed=args.seed, prompt=args.prompt)
    print(f"inputs: {result['tokens']} tokens ({result['image_tokens']} image tokens) built with {result['route']}")
    if args.per_layer:
        for name, difference in result["layers"].items():
            print(f"  {name:<14} max |diff| {difference:.3e}")
    passed = result["logits"] <= args.threshold
    print(
        f"logits: max |diff| {result['logits']:.3e} (largest |logit| {result['logit_scale']:.2f}), threshold "
        f"{args.threshold:.1e}: {'PASS' if passed else 'FAIL'}"
    )
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
