"""Generate text from an exported Hugging Face folder with transformers: a check that the export is usable.

    python -m checkpoints_tools.generate --hf HF_DIR --image photo.jpg --prompt "Describe the picture."
    python -m checkpoints_tools.generate --hf HF_DIR --draw --prompt "Describe the picture."
    python -m checkpoints_tools.generate --hf HF_DIR --image scene.png --no-chat --prompt ""

Loads ``Qwen2_5_VLForConditionalGeneration`` from the folder, builds one chat turn with the image the way
the folder's processor does, and prints the greedy continuation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from megatron_vl.command_line import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m checkpoints_tools.generate", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hf", type=Path, required=True, help="the exported Hugging Face folder (to_hf output)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="an image file to ask about")
    source.add_argument("--draw", action="store_true", help="draw a picture of coloured shapes instead")
    parser.add_argument("--prompt", default="Describe the picture.", help="the user's text after the image")
    parser.add_argument(
        "--no-chat", action="store_true",
        help="no chat template: the image, then the prompt (may be empty), as in a pre-training document",
    )
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn picture (default 0)")
    return parser


def generate(hf_dir: Path, image, prompt: str, max_new_tokens: int, *, chat: bool = True) -> tuple[str, int, str]:
    """The greedy continuation of one chat turn (or, ``chat=False``, of the image and ``prompt`` alone), how many
    tokens it has, and which processor route built the inputs."""
    from checkpoints_tools.batched_generation import BatchedGenerator

    generator = BatchedGenerator(hf_dir)
    generated = generator.generate([[image]], [prompt], max_new_tokens=max_new_tokens, chat=chat)[0]
    return generated.text, generated.tokens, generator.inputs.route


def run(args: argparse.Namespace) -> int:
    from checkpoints_tools.hf_inputs import draw_image
    from megatron_vl.data.images import load_image

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.draw:
        image, described = draw_image(224, 168, args.seed), f"a drawn 224x168 picture (seed {args.seed})"
    else:
        if not args.image.is_file():
            raise ValueError(f"image {args.image} does not exist")
        image, described = load_image(args.image), str(args.image)
    start = time.perf_counter()
    text, count, route = generate(args.hf, image, args.prompt, args.max_new_tokens, chat=not args.no_chat)
    print(f"image: {described}; inputs built with {route}")
    print(f"prompt: {args.prompt}")
    print(f"generated ({count} tokens, {time.perf_counter() - start:.1f} s): {text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
