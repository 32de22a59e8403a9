"""One shared set-up for the conversion tests (built once, it holds the only multi-rank run).

* a ``tiny`` HF ``Qwen2_5_VLForConditionalGeneration`` with random weights, saved by transformers in shards,
  with a trained tokenizer and a preprocessor config of non-default pixel limits;
* ``from_hf`` of it at TP=2, PP=2;
* in 4 gloo ranks, megatron-core's own ``dist_checkpointing.save`` of the same weights at TP x PP in
  {1, 2} x {1, 2} (PP=2 at TP=1 with an uneven split), the logits of a document at each layout, and the
  ``from_hf`` checkpoint loaded by megatron-core at TP=2, PP=2.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from checkpoints_tools.from_hf import ImportRequest, import_checkpoint
from megatron_vl.models.hf_config import to_hf_preprocessor_config
from megatron_vl.data.images import ImageSettings
from megatron_vl.models.hf_mapping import from_hf
from megatron_vl.tokenizer import TRAINED_SPECIAL_IDS, train_bpe_tokenizer
from tests.checkpoints_tools.megatron_checkpoints import save_layouts
from tests.models.vl_batches import IMAGE, VIDEO, VISION_END, VISION_START, document, hf_model, tiny_config
from tests.multirank import run_ranks

CORPUS = ["A red circle at the top left and a blue square at the bottom right.", "What is 47 + 38? It is 85."] * 50
LAYOUTS = [(1, 1, None), (2, 1, None), (1, 2, 1), (2, 2, None)]
IMAGE_SETTINGS = ImageSettings(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)


@dataclasses.dataclass
class World:
    root: Path
    config: object
    hf: torch.nn.Module
    hf_dir: Path
    tokenizer_dir: Path
    document: dict
    hf_logits: torch.Tensor
    imported: Path
    """The from_hf checkpoint root (TP=2, PP=2)."""
    megatron_roots: dict
    """(tp, pp) -> root of megatron's own save at that layout."""
    megatron_logits: dict
    """(tp, pp) -> logits of ``document`` computed by VLModel at that layout."""
    imported_loaded: dict
    """Full parameters of the from_hf checkpoint as megatron-core loaded it at TP=2, PP=2."""


@pytest.fixture(scope="package")
def world(tmp_path_factory) -> World:
    import json

    root = tmp_path_factory.mktemp("conversion")
    config = tiny_config()
    tokenizer = train_bpe_tokenizer(CORPUS, 400)
    ids = (tokenizer.image_pad_id, tokenizer.vision_start_id, tokenizer.vision_end_id, tokenizer.video_pad_id)
    assert ids == (IMAGE, VISION_START, VISION_END, VIDEO) == tuple(
        TRAINED_SPECIAL_IDS[t] for t in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>")
    )
    hf = hf_model(config)
    hf_dir = root / "hf"
    hf.save_pretrained(hf_dir, max_shard_size="1MB")
    tokenizer.save_hf(str(hf_dir))
    (hf_dir / "preprocessor_config.json").write_text(json.dumps(to_hf_preprocessor_config(IMAGE_SETTINGS)))
    tokenizer_dir = root / "tokenizer"
    tokenizer.save_hf(str(tokenizer_dir))

    doc = document(hf, torch.Generator().manual_seed(3), [4, 6, 9], [(1, 6, 8), (1, 4, 4)])
    inputs = {"input_ids": doc.ids[None], "position_ids": doc.positions[:, None],
              "pixel_values": doc.pixel_values, "image_grid_thw": doc.grids}
    with torch.no_grad():
        hf_logits = hf(**inputs).logits[0]

    imported = root / "imported"
    import_checkpoint(ImportRequest(out=imported, hf=hf_dir, tensor_parallel=2, pipeline_parallel=2), progress=False)
    megatron_root = root / "megatron"
    result = run_ranks(
        save_layouts, 4, config, from_hf(hf.state_dict(), config), inputs, LAYOUTS, str(megatron_root),
        str(tokenizer_dir), IMAGE_SETTINGS, load_dirs=[str(imported / "iter_0000000")],
    )
    logits = {}
    for rank_result in result:
        for layout, value in rank_result["logits"].items():
            if value is not None:
                logits[layout] = value[0]
    return World(
        root=root, config=config, hf=hf, hf_dir=hf_dir, tokenizer_dir=tokenizer_dir, document=inputs,
        hf_logits=hf_logits, imported=imported,
        megatron_roots={(tp, pp): megatron_root / f"tp{tp}_pp{pp}" for tp, pp, _ in LAYOUTS},
        megatron_logits=logits, imported_loaded=result[0]["loaded"][str(imported / "iter_0000000")],
    )
