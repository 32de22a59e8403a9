"""pack end to end on a small sample-shard dataset: content, determinism, resume, long documents."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

import data_prep.pack.command as pack_module
from data_prep.__main__ import main
from data_prep.pack.document_tokens import tokenize_sample
from data_prep.pack.command import PackOptions, pack
from data_prep.pack.resume import WORK_DIR
from data_prep.pack.statistics import print_summary
from data_prep.sample_shards.reader import iter_dataset
from data_prep.inspect.verify import verify_dataset
from megatron_vl.data.images import ImageSettings
from megatron_vl.data.packed_format import PackedDataset
from megatron_vl.data.packed_manifest import PackedManifest
from megatron_vl.tokenizer import OPTIONAL_SPECIAL_TOKENS, TRAINED_SPECIAL_IDS, load_tokenizer
from tests.data_prep.sample_corpus import SEQ_LEN, make_samples, train_tokenizer, write_sample_dataset


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    tokenizer = train_tokenizer(root / "tokenizer")
    inputs = [str(write_sample_dataset(root / f"input{i}", make_samples(np.random.default_rng(i), 30))) for i in (0, 1)]
    return {"root": root, "tokenizer": tokenizer, "inputs": inputs}


def options(corpus, out, **overrides):
    values = dict(inputs=corpus["inputs"], tokenizer=corpus["tokenizer"], out=str(out), seq_len=SEQ_LEN, seed=5,
                  window=40, shard_size=3, workers=1)
    return PackOptions(**{**values, **overrides})


@pytest.fixture(scope="module")
def packed(corpus):
    out = corpus["root"] / "packed"
    pack(options(corpus, out), progress=False)
    return out


def tree(directory):
    return {path.name: path.read_bytes() for path in sorted(Path(directory).iterdir())}


def source_samples(corpus):
    return {(i, shard, record.key): record for i, directory in enumerate(corpus["inputs"])
            for shard, record in iter_dataset(directory)}


def test_output_is_a_valid_dataset_with_every_document(corpus, packed):
    manifest = PackedManifest.load(packed)
    assert verify_dataset(packed, deep=True, progress=False) == []
    assert not (packed / WORK_DIR).exists()
    assert [source.samples for source in manifest.sources] == [33, 33]
    # 2 x (30 short + long text in 3 parts + long interleaved in 2 parts); the huge image is dropped.
    assert manifest.num_documents == 2 * (30 + 3 + 2)
    assert manifest.split_documents == 4 and manifest.dropped == {"image_longer_than_seq_len": 2}
    assert set(manifest.tokens_per_kind) == {"caption", "grounding", "interleaved", "text", "cot"}
    assert 0 < manifest.padding_fraction < 0.1
    assert manifest.image_settings == ImageSettings()
    assert manifest.tokenizer_fingerprint == load_tokenizer(corpus["tokenizer"]).fingerprint


def test_documents_hold_their_samples_tokens_images_and_provenance(corpus, packed):
    tokenizer = load_tokenizer(corpus["tokenizer"])
    sources = source_samples(corpus)
    dataset = PackedDataset(packed)
    parts = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        images = iter(sample.images)
        for (start, end), document in zip(zip(sample.cu_seqlens[:-1], sample.cu_seqlens[1:]), sample.documents):
            source = document.source
            record = sources[(source.input, source.shard, source.key)]
            assert document.origin == record.meta.source and document.kind == record.meta.kind
            parts.setdefault((source.input, source.key), []).append(
                (document.part, sample.tokens[start:end], [next(images) for _ in range(document.num_images)]))
            np.testing.assert_array_equal(sample.position_ids[:, start], [0, 0, 0])
    assert len(parts) == 2 * 32
    for (input_index, key), pieces in parts.items():
        pieces.sort(key=lambda piece: piece[0])
        assert [part for part, _, _ in pieces] == [(i + 1, len(pieces)) for i in range(len(pieces))]
        record = next(r for (i, _, k), r in sources.items() if i == input_index and k == key)
        expected = tokenize_sample(record.meta, tokenizer, ImageSettings(), where=key)
        np.testing.assert_array_equal(np.concatenate([tokens for _, tokens, _ in pieces]), expected.tokens)
        assert [image for _, _, images in pieces for image in images] == record.images


def test_prompt_text_is_never_in_the_loss(packed):
    dataset = PackedDataset(packed)
    for i in range(len(dataset)):
        for document in dataset[i].documents:
            if document.kind == "caption":  # the test corpus marks caption text as prompt
                assert document.loss_tokens == 1  # only <|endoftext|>


def test_same_seed_gives_identical_bytes_whatever_the_workers(corpus, packed, tmp_path):
    out = tmp_path / "again"
    assert main(["pack", "--input", *corpus["inputs"], "--tokenizer", corpus["tokenizer"], "--out", str(out),
                 "--seq-len", str(SEQ_LEN), "--seed", "5", "--window", "40", "--shard-size", "3",
                 "--workers", "2"]) == 0
    assert tree(out) == tree(packed)
    other = tmp_path / "other-seed"
    pack(options(corpus, other, seed=6), progress=False)
    assert tree(other)["packed-000000.tar"] != tree(packed)["packed-000000.tar"]


def test_rerun_of_a_finished_pack_does_nothing_and_other_options_are_refused(corpus, packed):
    before = tree(packed)
    assert pack(options(corpus, packed), progress=False) is None
    assert tree(packed) == before
    with pytest.raises(ValueError, match="other inputs or options.*seed"):
        pack(options(corpus, packed, seed=1), progress=False)


class Interrupt:
    """Wraps a pass's task function: raises KeyboardInterrupt on call ``after + 1``, counts calls."""

    def __init__(self, function, after):
        self.function, self.after, self.calls = function, after, 0

    def __call__(self, task):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.function(task)


@pytest.mark.parametrize("stage", ["tokenize_shard", "write_packed_shard"])
def test_interrupted_pack_continues_where_it_stopped(corpus, packed, tmp_path, monkeypatch, stage):
    out = tmp_path / "resumed"
    original = getattr(pack_module, stage)
    monkeypatch.setattr(pack_module, stage, Interrupt(original, after=3))
    with pytest.raises(KeyboardInterrupt):
        pack(options(corpus, out), progress=False)
    assert not (out / "manifest.json").exists()
    with pytest.raises(ValueError, match="other inputs or options"):
        pack(options(corpus, out, window=7), progress=False)
    counting = Interrupt(original, after=10**9)
    monkeypatch.setattr(pack_module, stage, counting)
    pack(options(corpus, out), progress=False)
    total = 2 * 9 if stage == "tokenize_shard" else len(PackedManifest.load(packed).shards)
    assert counting.calls == total - 3
    assert tree(out) == tree(packed)


def test_damaged_finished_shard_is_rewritten_on_resume(corpus, packed, tmp_path, monkeypatch):
    out = tmp_path / "damaged"
    monkeypatch.setattr(pack_module, "write_packed_shard", Interrupt(pack_module.write_packed_shard, after=2))
    with pytest.raises(KeyboardInterrupt):
        pack(options(corpus, out), progress=False)
    monkeypatch.undo()
    with open(out / "packed-000001.tar", "r+b") as file:
        file.seek(700)
        file.write(b"\xff")
    pack(options(corpus, out), progress=False)
    assert tree(out) == tree(packed)


def test_ctrl_c_on_the_command_line_exits_130_and_keeps_the_work(corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli"
    monkeypatch.setattr(pack_module, "write_packed_shard", Interrupt(pack_module.write_packed_shard, after=1))
    assert main(["pack", "--input", *corpus["inputs"], "--tokenizer", corpus["tokenizer"], "--out", str(out),
                 "--seq-len", str(SEQ_LEN), "--shard-size", "3", "--workers", "1"]) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert (out / "packed-000000.tar").exists() and not (out / "packed-000001.tar").exists()


def test_long_doc_drop_counts_every_long_document(corpus, tmp_path):
    manifest = pack(options(corpus, tmp_path / "drop", long_doc="drop"), progress=False)
    assert manifest.dropped == {"longer_than_seq_len": 6} and manifest.split_documents == 0
    assert manifest.num_documents == 2 * 30


def test_a_bigger_seq_len_splits_nothing(corpus, tmp_path):
    manifest = pack(options(corpus, tmp_path / "long", seq_len=2048), progress=False)
    assert manifest.dropped == {} and manifest.split_documents == 0
    assert manifest.num_documents == 2 * 33


def changed_input(corpus, tmp_path, change):
    samples = make_samples(np.random.default_rng(0), 6)
    change(samples)
    return str(write_sample_dataset(tmp_path / "bad-input", samples))


def test_malformed_samples_are_refused_with_their_shard_and_key(corpus, tmp_path):
    def unknown_special(samples):
        samples[2][0].segments.append({"special": "<|secret|>", "loss": True})

    bad = changed_input(corpus, tmp_path, unknown_special)
    with pytest.raises(ValueError, match=r"samples-000000\.tar sample 000000002: segment .* special token '<\|secret"):
        pack(options(corpus, tmp_path / "out", inputs=[bad]), progress=False)


def test_image_whose_png_differs_from_its_json_is_refused(corpus, tmp_path):
    def wrong_size(samples):
        meta, pngs = samples[0]
        image = dataclasses.replace(meta.images[0], height=meta.images[0].height + 28)
        samples[0] = (dataclasses.replace(meta, images=[image]), pngs)

    bad = changed_input(corpus, tmp_path, wrong_size)
    with pytest.raises(ValueError, match=r"sample 000000000: image is 56x84 pixels but its JSON says 84x84"):
        pack(options(corpus, tmp_path / "out", inputs=[bad]), progress=False)


def test_changed_input_shard_is_refused(corpus, tmp_path):
    bad = changed_input(corpus, tmp_path, lambda samples: None)
    manifest_path = os.path.join(bad, "ingest_manifest.json")
    manifest = json.loads(Path(manifest_path).read_text())
    manifest["shards"][1]["sha256"] = "0" * 64
    Path(manifest_path).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"samples-000001\.tar: sha256 .* differs"):
        pack(options(corpus, tmp_path / "out", inputs=[bad]), progress=False)


def test_inputs_with_different_image_settings_are_refused(corpus, tmp_path):
    other = changed_input(corpus, tmp_path, lambda samples: None)
    manifest_path = Path(other) / "ingest_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["image_settings"] = ImageSettings(max_pixels=28 * 28 * 64).to_dict()
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="same settings"):
        pack(options(corpus, tmp_path / "out", inputs=[corpus["inputs"][0], other]), progress=False)


def test_foreign_output_directory_is_refused(corpus, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        pack(options(corpus, tmp_path), progress=False)


@pytest.mark.parametrize("field, value, message", [
    ("seq_len", 0, "PackOptions.seq_len must be a positive integer, got 0"),
    ("workers", -1, "PackOptions.workers must be a positive integer, got -1"),
    ("long_doc", "truncate", "PackOptions.long_doc='truncate': choose one of"),
    ("document_alignment", 3, "--document-alignment 3 does not divide --seq-len 256"),
])
def test_bad_options_name_the_field_and_the_value(corpus, tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        options(corpus, tmp_path / "out", **{field: value})


def test_a_tokenizer_without_think_tokens_drops_and_counts_only_the_documents_that_need_them(corpus, tmp_path, capsys):
    tokenizer = train_tokenizer(tmp_path / "no-think", without=OPTIONAL_SPECIAL_TOKENS)
    needing = sum(
        any(segment.get("special") in OPTIONAL_SPECIAL_TOKENS for segment in record.meta.segments)
        for record in source_samples(corpus).values()
    )
    assert needing > 0
    manifest = pack(options(corpus, tmp_path / "out", tokenizer=tokenizer), progress=False)
    assert manifest.dropped == {"image_longer_than_seq_len": 2, "tokenizer_lacks_special_token": needing}
    assert manifest.num_documents == 2 * (30 + 3 + 2) - needing
    assert "<think>" not in manifest.special_ids
    assert verify_dataset(tmp_path / "out", deep=True, progress=False) == []
    assert "lacks <think>, </think>: documents that use them are dropped" in capsys.readouterr().err
    print_summary(manifest, "out")
    assert "dropped (tokenizer_lacks_special_token)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="sample 000000001: segment .* needs <think>, which tokenizer .* lacks; add "
                                         "<think> and </think> to the tokenizer's special tokens, or leave cot"):
        meta = next(r.meta for r in source_samples(corpus).values() if r.meta.kind == "grounding")
        tokenize_sample(meta, load_tokenizer(tokenizer), ImageSettings(), where="sample 000000001")


def test_tokenizers_with_think_tokens_keep_their_ids_and_fingerprint(corpus, packed):
    tokenizer = load_tokenizer(corpus["tokenizer"])
    manifest = PackedManifest.load(packed)
    assert manifest.special_ids == TRAINED_SPECIAL_IDS == tokenizer.special_ids
    assert manifest.tokenizer_fingerprint == tokenizer.fingerprint


def test_document_alignment_reserves_each_documents_padding_and_is_recorded(corpus, packed, tmp_path):
    out = tmp_path / "aligned"
    pack(options(corpus, out, document_alignment=8), progress=False)
    manifest = PackedManifest.load(out)
    assert manifest.pack_settings.document_alignment == 8
    assert verify_dataset(out, deep=True, progress=False) == []
    dataset = PackedDataset(out)
    assert max(_aligned_room(sample, 8) for sample in _samples(dataset)) <= SEQ_LEN
    # The control: packed without the reservation, some rows have no room to pad their documents.
    assert max(_aligned_room(sample, 8) for sample in _samples(PackedDataset(packed))) > SEQ_LEN
    # The reserved room is padding: the same documents in at least as many rows as without it.
    unaligned = PackedManifest.load(packed)
    assert manifest.tokens_per_kind == unaligned.tokens_per_kind
    assert manifest.num_samples >= unaligned.num_samples and manifest.padding_fraction >= unaligned.padding_fraction


def test_128k_rows_pack_every_document_aligned_for_cp8(corpus, tmp_path):
    # The 128K variant of stage 4 (CP=8, documents padded to 16): every document of the corpus fits one row.
    out = tmp_path / "128k"
    manifest = pack(options(corpus, out, seq_len=131072, document_alignment=16), progress=False)
    assert verify_dataset(out, deep=True, progress=False) == []
    assert manifest.dropped == {} and manifest.split_documents == 0 and manifest.num_documents == 2 * 33
    rows = _samples(PackedDataset(out))
    assert {len(sample.tokens) for sample in rows} == {131072}
    assert sum(len(sample.documents) for sample in rows) == manifest.num_documents
    assert max(_aligned_room(sample, 16) for sample in rows) <= 131072


def _aligned_room(sample, alignment):
    return sum(-(-int(length) // alignment) * alignment for length in sample.seq_lens)


def _samples(dataset):
    return [dataset.read(shard, index) for shard, entry in enumerate(dataset.manifest.shards)
            for index in range(entry.num_samples)]
