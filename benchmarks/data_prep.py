"""Data-preparation benchmark: packing efficiency, ingest / pack throughput, image preprocessing speed.

1. Packing efficiency (non-padding token fraction) at 8K and 32K on a synthetic length mix drawn
   to look like the pre-training data: captions with 64-1300 image tokens, OCR pages, interleaved
   documents, long chains of thought up to 16K tokens, plain text. Documents longer than the
   sequence are split into sequence-long parts first, the same for every method. Compared: one
   document per sequence, greedy in-order packing (next fit in shuffled order) and pack's plan
   (seeded shuffle, best-fit decreasing in sorted windows).
2. Throughput of ingest and pack on the demo corpus (samples per second per process).
3. Image preprocessing against transformers' Qwen2VLImageProcessorPil on drawn photos of
   640x480 to 2048x1536 pixels: ours (resize_image + patchify) vs the processor, as a ratio.
4. Scale-out on photo-like JPEGs (640x480 to 2048x1536, quality 90, one per caption and several per interleaved
   document): ingest + pack throughput of one process with one worker (documents/s, images/s, tokens/s per
   core), the same data as 2 partitions run side by side (``--partition 0/2`` and ``1/2``) against 1, and
   the node-hours the whole curriculum's preparation would take on 64-core nodes at those rates.
5. Videos, on a synthetic natural-looking clip (moving gradients and shapes with sensor noise, 480x480 at
   30 fps, H.264 at crf 18): ingest's path (decode, keep 2 frames per second, resize to 476x476, store as PNG) against
   plain PyAV decoding of the same file (one thread each: per core); the bytes per video-second of the kept
   frames stored as our PNGs, as H.264 at crf 18, as lossless H.264 (libx264rgb -qp 0) and as raw uint8; and
   the loader's decoding cost per video-second of PNG frames against H.264.

Run by hand: ``python benchmarks/data_prep.py`` (about a minute); see --help for sizes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep import train_tokenizer  # noqa: E402
from data_prep.demo import command as demo_corpus  # noqa: E402
from data_prep.ingest import command as ingest  # noqa: E402
from data_prep.ingest.raw_schema import VideoReference  # noqa: E402
from data_prep.ingest.raw_sources import WorkItem  # noqa: E402
from data_prep.ingest.video_frames import store_video  # noqa: E402
from data_prep.pack import command as pack  # noqa: E402
from data_prep.pack.plan_sequences import plan_sequences, token_utilisation  # noqa: E402
from megatron_vl.data.images import ImageSettings, patchify, resize_image  # noqa: E402
from megatron_vl.data.packed_manifest import PackedManifest  # noqa: E402
from megatron_vl.data.videos import VideoSettings  # noqa: E402

TARGET_UTILISATION = 0.99
TARGET_PREPROCESSING_SPEEDUP = 2.0
CURRICULUM_TOKENS = (300 + 167 + 1400 + 550) * 10**9
"""The four 7B stages' train_tokens (config/recipes): every token counted as unique data, an upper bound."""
CURRICULUM_IMAGES = 500 * 10**6
"""Images to prepare, an assumption: 'hundreds of millions' (issue 12); scale the result for your corpus."""
NODE_CORES = 64


def document_lengths(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Token lengths and kinds of ``count`` documents of the pre-training mix."""
    kinds = np.array(["caption", "ocr", "interleaved", "cot", "text"])
    kind = rng.choice(len(kinds), size=count, p=[0.5, 0.15, 0.15, 0.1, 0.1])
    image_tokens = lambda size: rng.integers(64, 1301, size)  # noqa: E731
    caption = image_tokens(count) + rng.integers(8, 120, count) + 3
    ocr = rng.integers(600, 3000, count) + rng.integers(100, 2000, count) + 3
    interleaved = sum(image_tokens(count) + 2 for _ in range(4)) + rng.integers(200, 3000, count) + 1
    cot = np.clip(rng.lognormal(np.log(2500), 0.9, count), 300, 16384).astype(np.int64)
    text = np.clip(rng.lognormal(np.log(600), 1.2, count), 20, 12000).astype(np.int64)
    lengths = np.choose(kind, [caption, ocr, interleaved, cot, text])
    return lengths, kinds[kind]


def split_to(lengths: np.ndarray, seq_len: int) -> np.ndarray:
    parts = [np.full(length // seq_len, seq_len) for length in lengths[lengths > seq_len]]
    rests = np.where(lengths > seq_len, lengths % seq_len, lengths)
    return np.concatenate([rests[rests > 0], *parts])


def greedy_in_order(lengths: np.ndarray, seq_len: int, seed: int) -> list[list[int]]:
    sequences, current, room = [], [], seq_len
    for document in np.random.default_rng(seed).permutation(len(lengths)).tolist():
        if lengths[document] > room:
            sequences.append(current)
            current, room = [], seq_len
        current.append(document)
        room -= int(lengths[document])
    return sequences + [current]


def packing_efficiency(count: int, window: int) -> list[tuple]:
    rows = []
    raw, _ = document_lengths(count, np.random.default_rng(0))
    for seq_len in (8192, 32768):
        lengths = split_to(raw, seq_len)
        one_each = [[i] for i in range(len(lengths))]
        greedy = greedy_in_order(lengths, seq_len, seed=0)
        started = time.perf_counter()
        planned = plan_sequences(lengths, seq_len=seq_len, seed=0, window=window)
        seconds = time.perf_counter() - started
        rows.append((seq_len, len(lengths), *(token_utilisation(lengths, s, seq_len) for s in
                                              (one_each, greedy, planned)), len(planned), seconds))
    return rows


def throughput(samples_per_kind: int, workers: int) -> list[tuple]:
    rows = []
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        call(demo_corpus, "--out", root / "raw", "--samples-per-kind", samples_per_kind, "--long-samples",
             max(samples_per_kind // 10, 1), "--workers", workers)
        call(train_tokenizer, "--input", root / "raw", "--vocab-size", 4096, "--out", root / "tok")
        documents = sum(1 for path in (root / "raw").glob("*.jsonl") for _ in open(path))
        for count in sorted({1, workers}):
            seconds = call(ingest, "--input", root / "raw", "--out", root / f"shards{count}", "--workers", count,
                           "--shard-size", 200)
            rows.append(("ingest", count, documents, seconds))
        for count in sorted({1, workers}):
            seconds = call(pack, "--input", root / "shards1", "--tokenizer", root / "tok", "--out",
                           root / f"packed{count}", "--seq-len", 8192, "--shard-size", 16, "--workers", count)
            rows.append(("pack", count, documents, seconds))
    return rows


def call(module, *argv) -> float:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    args = parser.parse_args([str(arg) for arg in argv])
    with open(os.devnull, "w") as quiet:
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = quiet
        try:
            started = time.perf_counter()
            assert module.run(args) == 0
            return time.perf_counter() - started
        finally:
            sys.stdout, sys.stderr = stdout, stderr


def photo(height: int, width: int, seed: int) -> Image.Image:
    """A smooth picture with shapes: compresses and resizes like a photograph, unlike noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * rng.random(3)
    ramp = ramp + np.linspace(0, 255, height, dtype=np.float32)[:, None, None] * rng.random(3)
    image = Image.fromarray(np.clip(ramp / 2, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(20, max(height, width) // 4))
        draw.ellipse((x, y, x + size, y + size), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return image.filter(ImageFilter.GaussianBlur(2))


def preprocessing(count: int) -> list[tuple]:
    from transformers import Qwen2VLImageProcessorPil

    processor = Qwen2VLImageProcessorPil()
    settings = ImageSettings()
    sizes = [(480, 640), (768, 1024), (1080, 1920), (1536, 2048)]
    images = [photo(*sizes[i % len(sizes)], seed=i) for i in range(count)]
    rows = []

    def ours():
        for image in images:
            patchify(resize_image(image, settings), settings)

    def patchify_only(resized=[resize_image(image, settings) for image in images]):
        for pixels in resized:
            patchify(pixels, settings)

    def hf():
        for image in images:
            processor(images=[image], return_tensors="np")

    timings = {name: best_of(function) for name, function in
               (("hf", hf), ("ours", ours), ("patchify", patchify_only))}
    rows.append(("resize + patchify (ours) vs processor", timings["hf"] / timings["ours"], timings, count))
    rows.append(("patchify of stored image (loader) vs processor", timings["hf"] / timings["patchify"], timings,
                 count))
    return rows


def best_of(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def jpeg_corpus(root: Path, documents: int) -> tuple[int, int]:
    """Captions with one photo and interleaved documents with three, JPEGs of camera-like sizes, as JSONL
    files of 100 documents each (a partition takes whole files). Returns (documents, images)."""
    sizes = [(480, 640), (768, 1024), (1080, 1920), (1536, 2048)]
    (root / "img").mkdir(parents=True)
    images = 0
    for start in range(0, documents, 100):
        with open(root / f"part-{start // 100:04d}.jsonl", "w") as file:
            for index in range(start, min(start + 100, documents)):
                names = []
                for _ in range(1 if index % 2 == 0 else 3):
                    name = f"img/{images:06d}.jpg"
                    photo(*sizes[images % len(sizes)], seed=images).save(root / name, quality=90)
                    names.append(name)
                    images += 1
                words = " ".join(f"word{(index * 7 + i) % 500}" for i in range(40))
                if len(names) == 1:
                    record = {"kind": "caption", "image": names[0], "caption": words}
                else:
                    record = {"kind": "interleaved", "content": [{"text": words}, *({"image": n} for n in names)]}
                file.write(json.dumps(record) + "\n")
    return documents, images


def _prepare(raw: Path, out: Path, tokenizer: Path, partition: str | None) -> None:
    extra = ["--partition", partition] if partition else []
    call(ingest, "--input", raw, "--out", out / "shards", "--workers", 1, "--dedup-kinds", "", *extra)
    call(pack, "--input", out / "shards", "--tokenizer", tokenizer, "--out", out / "packed", "--seq-len", 8192,
         "--workers", 1, *extra)


def scale_out(documents: int) -> dict:
    """Seconds of one process on the whole JPEG corpus, of ingest and pack each, and of 2 partitions side by side."""
    from concurrent.futures import ProcessPoolExecutor

    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        documents, images = jpeg_corpus(root / "raw", documents)
        call(train_tokenizer, "--input", root / "raw", "--vocab-size", 4096, "--out", root / "tok")
        ingest_seconds = call(ingest, "--input", root / "raw", "--out", root / "one" / "shards", "--workers", 1,
                              "--dedup-kinds", "")
        pack_seconds = call(pack, "--input", root / "one" / "shards", "--tokenizer", root / "tok", "--out",
                            root / "one" / "packed", "--seq-len", 8192, "--workers", 1)
        manifest = PackedManifest.load(root / "one" / "packed")
        tokens = sum(stats.tokens for stats in manifest.tokens_per_kind.values())
        started = time.perf_counter()
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(_prepare, [root / "raw"] * 2, [root / "two"] * 2, [root / "tok"] * 2, ["0/2", "1/2"]))
        two_seconds = time.perf_counter() - started
    return dict(documents=documents, images=images, tokens=tokens, ingest_seconds=ingest_seconds,
                pack_seconds=pack_seconds, two_partition_seconds=two_seconds)


def node_hours(result: dict) -> dict:
    """The curriculum's preparation on NODE_CORES-core nodes at the measured per-core rates."""
    images_per_core_second = result["images"] / result["ingest_seconds"]
    tokens_per_core_second = result["tokens"] / result["pack_seconds"]
    ingest_core_hours = CURRICULUM_IMAGES / images_per_core_second / 3600
    pack_core_hours = CURRICULUM_TOKENS / tokens_per_core_second / 3600
    return dict(images_per_core_second=images_per_core_second, tokens_per_core_second=tokens_per_core_second,
                ingest_node_hours=ingest_core_hours / NODE_CORES, pack_node_hours=pack_core_hours / NODE_CORES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200_000, help="documents in the length mix")
    parser.add_argument("--window", type=int, default=10_000, help="pack's --window")
    parser.add_argument("--samples-per-kind", type=int, default=200, help="demo corpus size for throughput")
    parser.add_argument("--workers", type=int, default=2, help="processes for the multi-process throughput rows")
    parser.add_argument("--images", type=int, default=12, help="photos for the preprocessing comparison")
    parser.add_argument("--jpeg-documents", type=int, default=400, help="documents of the JPEG corpus for section 4")
    parser.add_argument("--video-seconds", type=int, default=10, help="length of the synthetic clip of section 5")
    parser.add_argument("--sections", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="which sections to run")
    args = parser.parse_args()

    if 1 in args.sections:
        packing_section(args)
    if 2 in args.sections:
        throughput_section(args)
    if 3 in args.sections:
        preprocessing_section(args)
    if 4 in args.sections:
        scale_out_section(args)
    if 5 in args.sections:
        video_section(args)


def packing_section(args) -> None:
    print(f"\n1. packing efficiency (non-padding tokens / all tokens), {args.documents} documents, "
          f"window {args.window}; target >= {TARGET_UTILISATION:.0%}")
    print(f"{'seq_len':>8}{'docs':>9}{'one per seq':>13}{'greedy':>10}{'pack':>10}{'sequences':>11}{'plan s':>8}  ok")
    for seq_len, docs, one, greedy, planned, sequences, seconds in packing_efficiency(args.documents, args.window):
        print(f"{seq_len:>8}{docs:>9}{one:>13.4f}{greedy:>10.4f}{planned:>10.4f}{sequences:>11}{seconds:>8.2f}  "
              f"{'yes' if planned >= TARGET_UTILISATION else 'NO'}")


def throughput_section(args) -> None:
    print(f"\n2. throughput on the demo corpus ({args.samples_per_kind} documents per kind, seq_len 8192 for pack)")
    print(f"{'step':<8}{'workers':>8}{'samples':>9}{'seconds':>9}{'samples/s':>11}{'per process':>13}")
    for step, workers, samples, seconds in throughput(args.samples_per_kind, args.workers):
        print(f"{step:<8}{workers:>8}{samples:>9}{seconds:>9.2f}{samples / seconds:>11.1f}"
              f"{samples / seconds / workers:>13.1f}")


def preprocessing_section(args) -> None:
    print(f"\n3. image preprocessing, {args.images} photos of 640x480 to 2048x1536 "
          f"(target >= {TARGET_PREPROCESSING_SPEEDUP:.0f}x the processor)")
    print(f"{'comparison':<50}{'processor s':>12}{'ours s':>9}{'speedup':>9}")
    for name, ratio, timings, _ in preprocessing(args.images):
        ours = timings["ours"] if name.startswith("resize") else timings["patchify"]
        print(f"{name:<50}{timings['hf']:>12.3f}{ours:>9.3f}{ratio:>8.2f}x")



def scale_out_section(args) -> None:
    result = scale_out(args.jpeg_documents)
    hours = node_hours(result)
    one = result["ingest_seconds"] + result["pack_seconds"]
    print(f"\n4. scale-out on {result['documents']} documents with {result['images']} JPEG photos "
          f"({result['tokens']:,} tokens packed at 8192), one worker per process")
    print(f"{'step':<8}{'seconds':>9}{'documents/s':>13}{'images/s':>10}{'tokens/s':>11}")
    print(f"{'ingest':<8}{result['ingest_seconds']:>9.2f}{result['documents'] / result['ingest_seconds']:>13.1f}"
          f"{result['images'] / result['ingest_seconds']:>10.1f}{'':>11}")
    print(f"{'pack':<8}{result['pack_seconds']:>9.2f}{result['documents'] / result['pack_seconds']:>13.1f}"
          f"{'':>10}{result['tokens'] / result['pack_seconds']:>11,.0f}")
    print(f"2 partitions side by side vs 1 process: {result['two_partition_seconds']:.2f} s vs {one:.2f} s, "
          f"speed-up {one / result['two_partition_seconds']:.2f}x on {os.cpu_count()} cores")
    print(f"curriculum: {CURRICULUM_IMAGES:.1e} images / {hours['images_per_core_second']:.1f} images/s/core / 3600 / "
          f"{NODE_CORES} = {hours['ingest_node_hours']:,.0f} node-hours of ingest; {CURRICULUM_TOKENS:.2e} tokens / "
          f"{hours['tokens_per_core_second']:,.0f} tokens/s/core / 3600 / {NODE_CORES} = "
          f"{hours['pack_node_hours']:,.0f} node-hours of pack")


def natural_clip(seconds: int, fps: int, side: int) -> list[np.ndarray]:
    """Frames of a camera-like clip: drifting colour gradients, moving discs and sensor noise."""
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, side, dtype=np.float32)
    discs = [(rng.random(2) * side, (rng.random(2) - 0.5) * 6, rng.integers(20, 70), rng.integers(0, 256, 3))
             for _ in range(6)]
    rows, columns = np.mgrid[0:side, 0:side]
    frames = []
    for index in range(seconds * fps):
        phase = index / fps
        pixels = np.stack([np.outer(np.sin(grid * 3 + phase * 0.7 + c), np.cos(grid * 2 - phase * 0.5))
                           for c in range(3)], axis=-1) * 90 + 128
        for (start, velocity, radius, colour) in discs:
            y, x = (start + velocity * index) % side
            pixels[(rows - y) ** 2 + (columns - x) ** 2 < radius ** 2] = colour
        pixels += rng.normal(0, 3, pixels.shape)
        frames.append(np.clip(pixels, 0, 255).astype(np.uint8))
    return frames


def encode_clip(frames: list[np.ndarray], fps: int, codec: str, options: dict) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream(codec, rate=fps, options=options)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "rgb24" if codec == "libx264rgb" else "yuv420p"
        for pixels in frames:
            output.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def decode_clip(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        return sum(1 for _ in container.decode(stream))


def video_storage(seconds: int) -> dict:
    """Ingest's cost and the stored size and decoding cost of the kept frames, per video-second."""
    source_fps, side = 30, 480
    source = encode_clip(natural_clip(seconds, source_fps, side), source_fps, "libx264", {"crf": "18"})
    item = WorkItem(source={"tar": "clips.tar", "key": "clip"}, members={"mp4": source})
    settings = VideoSettings()
    stored = None

    def ours():
        nonlocal stored
        stored = store_video(VideoReference(source="mp4", fps=2.0), item, settings, png_compression=1)

    timings = {"ours": best_of(ours), "pyav": best_of(lambda: decode_clip(source))}
    kept = [np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) for png in stored.pngs]
    kept_fps = round(stored.meta.fps)
    crf18 = encode_clip(kept, kept_fps, "libx264", {"crf": "18"})
    lossless = encode_clip(kept, kept_fps, "libx264rgb", {"qp": "0"})
    sizes = {"PNG frames (ours)": sum(map(len, stored.pngs)), "H.264 crf 18": len(crf18),
             "H.264 lossless (libx264rgb -qp 0)": len(lossless), "raw uint8": sum(frame.nbytes for frame in kept)}
    loads = {"PNG frames (ours)": best_of(lambda: [np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
                                                   for png in stored.pngs]),
             "H.264 crf 18": best_of(lambda: decode_clip(crf18)),
             "H.264 lossless (libx264rgb -qp 0)": best_of(lambda: decode_clip(lossless))}
    return dict(seconds=seconds, source_frames=seconds * source_fps, source_bytes=len(source), meta=stored.meta,
                timings=timings, sizes=sizes, loads=loads)


def video_section(args) -> None:
    result = video_storage(args.video_seconds)
    meta, timings, seconds = result["meta"], result["timings"], result["seconds"]
    print(f"\n5. video: a {seconds} s synthetic clip, {result['source_frames']} frames of 480x480 at 30 fps "
          f"(H.264 crf 18, {result['source_bytes'] / seconds / 1e3:.0f} kB per second), {meta.num_frames} frames kept "
          f"({meta.fps:g} fps, {meta.width}x{meta.height}); one thread")
    print(f"{'ingest step':<44}{'seconds':>9}{'source frames/s':>17}{'kept frames/s':>15}")
    print(f"{'plain PyAV decoding of every frame':<44}{timings['pyav']:>9.3f}"
          f"{result['source_frames'] / timings['pyav']:>17.0f}{'':>15}")
    print(f"{'ours: decode, keep, resize, PNG-encode':<44}{timings['ours']:>9.3f}"
          f"{result['source_frames'] / timings['ours']:>17.0f}{meta.num_frames / timings['ours']:>15.1f}")
    print(f"ours / plain decoding: {timings['ours'] / timings['pyav']:.2f}x the time")
    print(f"{'kept frames stored as':<44}{'kB per video-s':>15}{'vs PNG':>8}{'load ms per video-s':>21}")
    png_size = result["sizes"]["PNG frames (ours)"]
    for name, size in result["sizes"].items():
        load = result["loads"].get(name)
        load_text = f"{load / seconds * 1e3:>21.2f}" if load is not None else f"{'(no decoding)':>21}"
        print(f"{name:<44}{size / seconds / 1e3:>15.1f}{size / png_size:>7.2f}x{load_text}")


if __name__ == "__main__":
    main()
