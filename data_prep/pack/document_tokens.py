"""One sample of a sample shard turned into the token sequence it packs as, and split if too long.

A sample's segments become tokens in document order: text is encoded, a special segment is its
token id, an image becomes ``<|vision_start|>``, one ``<|image_pad|>`` per merged vision token,
``<|vision_end|>``; a video the same with one ``<|video_pad|>`` per merged vision token of each
temporal patch (``ceil(frames / temporal_patch_size)`` of them, the last frame repeated to fill the
last). ``<|endoftext|>`` ends the document. Alongside, ``loss[j]`` says whether token j
is a target the loss trains on: text and specials of segments with ``loss: true`` and the closing
``<|endoftext|>``; never prompt text or anything of an image or a video.

Long-document policy (``--long-doc``). A document longer than ``seq_len`` is, with ``split``,
cut into consecutive parts of at most ``seq_len`` tokens at token boundaries, each as long as it
can be without cutting inside an image or a video (the cut moves back to just before its
``<|vision_start|>``). Each part is its own document: positions restart at 0 and its first token
is predicted by nothing, and its provenance records part i of n. A document holding an image or a
video whose tokens alone exceed ``seq_len`` cannot be split that way and is dropped (counted as
``image_longer_than_seq_len`` or ``video_longer_than_seq_len``, after the first such one). With
``drop``, every document longer than ``seq_len`` is dropped (counted as ``longer_than_seq_len``). Nothing is truncated.

Tokenizers without ``<think>`` / ``</think>`` (Qwen2.5-VL's own). A document that uses one of them
(a chain of thought) cannot be written with such a tokenizer: pack drops it and counts it as
``tokenizer_lacks_special_token``, and its summary says the fix; every other document packs as usual.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_prep.sample_shards.sample_meta import SampleMeta
from megatron_vl.data.images import ImageSettings, num_vision_tokens
from megatron_vl.data.packed_manifest import LONG_DOC_POLICIES
from megatron_vl.tokenizer import OPTIONAL_SPECIAL_TOKENS, Tokenizer

TOKENIZER_LACKS_SPECIAL_TOKEN = "tokenizer_lacks_special_token"
"""Why a document that needs ``<think>`` / ``</think>`` is dropped when the tokenizer lacks them."""
LACKING_SPECIAL_TOKEN_FIX = "add <think> and </think> to the tokenizer's special tokens, or leave cot documents out"

@dataclasses.dataclass(kw_only=True)
class Document:
    """The tokens of one document (or one part of a split document) and where its images and videos are."""

    tokens: np.ndarray
    """int32 token ids, images and videos expanded, ``<|endoftext|>`` last (unless a later part follows)."""
    loss: np.ndarray
    """uint8, 1 where the token is a target the loss trains on."""
    image_grids: list[tuple[int, int, int]]
    """(t, h, w) in patches of each image, in order."""
    image_refs: list[int]
    """Which image of the source sample each of those images is."""
    kind: str
    """Data kind of the sample."""
    part: tuple[int, int] = (1, 1)
    """(i, n): part i of the n parts of a split document."""
    video_grids: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    """(t, h, w) in patches of each video, in order: t temporal patches of h x w patches."""
    video_seconds: list[float] = dataclasses.field(default_factory=list)
    """Seconds one temporal patch of each of those videos spans (transformers' ``second_per_grid_ts``)."""
    video_refs: list[int] = dataclasses.field(default_factory=list)
    """Which video of the source sample each of those videos is."""

    def __len__(self) -> int:
        return len(self.tokens)


def lacking_special_tokens(meta: SampleMeta, tokenizer: Tokenizer) -> list[str]:
    """The optional special tokens (``<think>``, ``</think>``) the sample uses and the tokenizer lacks."""
    used = {segment.get("special") for segment in meta.segments if isinstance(segment.get("special"), str)}
    return [token for token in OPTIONAL_SPECIAL_TOKENS if token in used and token not in tokenizer.special_ids]


def tokenize_sample(meta: SampleMeta, tokenizer: Tokenizer, settings: ImageSettings, *, where: str) -> Document:
    """The document of a sample's ``{key}.json``; ``where`` names the sample in errors."""
    images, videos, segments = meta.images, meta.videos, meta.segments
    texts = [segment["text"] for segment in segments if "text" in segment]
    encoded = iter(tokenizer.encode_batch(texts))
    pieces, loss_pieces, grids, refs = [], [], [], []
    video_grids, video_seconds, video_refs = [], [], []
    for number, segment in enumerate(segments):
        if "text" in segment:
            ids = next(encoded)
            pieces.append(ids)
            loss_pieces.append([_loss_flag(segment, number, where)] * len(ids))
        elif "special" in segment:
            name = segment["special"]
            if name in OPTIONAL_SPECIAL_TOKENS and name not in tokenizer.special_ids:
                raise ValueError(f"{where}: segment {number} needs {name}, which tokenizer {tokenizer.path} lacks; "
                                 f"{LACKING_SPECIAL_TOKEN_FIX}")
            if name not in tokenizer.special_ids:
                raise ValueError(
                    f"{where}: segment {number} names special token {name!r}, which is not one of "
                    f"{list(tokenizer.special_ids)}; fix the sample's source and re-run ingest"
                )
            pieces.append([tokenizer.special_ids[name]])
            loss_pieces.append([_loss_flag(segment, number, where)])
        elif "image" in segment:
            k = segment["image"]
            if not isinstance(k, int) or not 0 <= k < len(images):
                raise ValueError(f"{where}: segment {number} refers to image {k!r} but the sample has "
                                 f"{len(images)} images; re-run ingest on its source")
            height, width = images[k].height, images[k].width
            count = num_vision_tokens(height, width, settings)
            pieces.append([tokenizer.vision_start_id] + [tokenizer.image_pad_id] * count + [tokenizer.vision_end_id])
            loss_pieces.append([0] * (count + 2))
            grids.append((1, height // settings.patch_size, width // settings.patch_size))
            refs.append(k)
        elif "video" in segment:
            k = segment["video"]
            if not isinstance(k, int) or not 0 <= k < len(videos):
                raise ValueError(f"{where}: segment {number} refers to video {k!r} but the sample has "
                                 f"{len(videos)} videos; re-run ingest on its source")
            video = videos[k]
            temporal = settings.temporal_patch_size
            grid_t = -(-video.num_frames // temporal)
            count = grid_t * num_vision_tokens(video.height, video.width, settings)
            pieces.append([tokenizer.vision_start_id] + [tokenizer.video_pad_id] * count + [tokenizer.vision_end_id])
            loss_pieces.append([0] * (count + 2))
            video_grids.append((grid_t, video.height // settings.patch_size, video.width // settings.patch_size))
            # fps is the rate of the stored frames, so one temporal patch of them spans temporal / fps seconds.
            video_seconds.append(temporal / video.fps)
            video_refs.append(k)
        else:
            raise ValueError(f"{where}: segment {number} has none of 'text', 'special', 'image', 'video': {segment}")
    for what, count, used in (("images", len(images), refs), ("videos", len(videos), video_refs)):
        unused = sorted(set(range(count)) - set(used))
        if unused:
            raise ValueError(f"{where}: {what} {unused} are not referenced by any segment; re-run ingest on its source")
    pieces.append([tokenizer.eod_id])
    loss_pieces.append([1])
    return Document(
        tokens=np.fromiter((t for piece in pieces for t in piece), dtype=np.int32),
        loss=np.fromiter((f for piece in loss_pieces for f in piece), dtype=np.uint8),
        image_grids=grids,
        image_refs=refs,
        kind=meta.kind,
        video_grids=video_grids,
        video_seconds=video_seconds,
        video_refs=video_refs,
    )


def _loss_flag(segment: dict, number: int, where: str) -> int:
    loss = segment.get("loss")
    if not isinstance(loss, bool):
        raise ValueError(f"{where}: segment {number} needs 'loss': true or false, got {loss!r}")
    return int(loss)


def fit_to_seq_len(
    document: Document, *, seq_len: int, policy: str, vision_start_id: int, vision_end_id: int, video_pad_id: int
) -> tuple[list[Document], str | None]:
    """The document's parts under the long-document policy, or ([], reason) when it is dropped."""
    assert policy in LONG_DOC_POLICIES, policy
    if len(document) <= seq_len:
        return [document], None
    if policy == "drop":
        return [], "longer_than_seq_len"
    starts = np.flatnonzero(document.tokens == vision_start_id)
    ends = np.flatnonzero(document.tokens == vision_end_id)
    assert len(starts) == len(ends) == len(document.image_grids) + len(document.video_grids)
    is_video = document.tokens[starts + 1] == video_pad_id
    too_long = np.flatnonzero(ends - starts + 1 > seq_len)
    if len(too_long):
        return [], "video_longer_than_seq_len" if is_video[too_long[0]] else "image_longer_than_seq_len"
    cuts = [0]
    while len(document) - cuts[-1] > seq_len:
        cut = cuts[-1] + seq_len
        # An image or video with start < cut <= end would be cut: cut just before it instead.
        inside = np.flatnonzero((starts < cut) & (cut <= ends))
        cuts.append(int(starts[inside[0]]) if len(inside) else cut)
    cuts.append(len(document))
    parts = []
    first_image = first_video = 0
    for i, (begin, end) in enumerate(zip(cuts[:-1], cuts[1:])):
        inside = (starts >= begin) & (starts < end)
        image_count, video_count = int(np.sum(inside & ~is_video)), int(np.sum(inside & is_video))
        images = slice(first_image, first_image + image_count)
        videos = slice(first_video, first_video + video_count)
        first_image += image_count
        first_video += video_count
        parts.append(Document(
            tokens=document.tokens[begin:end],
            loss=document.loss[begin:end],
            image_grids=document.image_grids[images],
            image_refs=document.image_refs[images],
            kind=document.kind,
            part=(i + 1, len(cuts) - 1),
            video_grids=document.video_grids[videos],
            video_seconds=document.video_seconds[videos],
            video_refs=document.video_refs[videos],
        ))
    return parts, None
