"""One tokenizer interface over tokenizer.json and sentencepiece, with fixed special-token ids."""

from __future__ import annotations

import io
import json

import pytest
import sentencepiece
from transformers import AutoTokenizer

from megatron_vl.tokenizer import (
    OPTIONAL_SPECIAL_TOKENS, REQUIRED_SPECIAL_TOKENS, SPECIAL_TOKENS, TRAINED_SPECIAL_IDS, HFTokenizer,
    SentencePieceTokenizer, load_tokenizer, train_bpe_tokenizer,
)

CORPUS = [
    "What is 47 + 38? Ones: 7 + 8 = 15, write 5, carry 1. So 47 + 38 = 85.",
    "A red circle at the top left and a blue square at the bottom right on a white background.",
    "Locate the green triangle.\n[{\"bbox_2d\": [10, 20, 120, 96], \"label\": \"green triangle\"}]",
    "Héllo wörld — ünïcode, tabs\tand  double  spaces.\n\nNew paragraph.",
] * 40
SAMPLES = [
    "A red circle at the top left.",
    "  leading spaces, 2024-01-02 and 12345 digits",
    "literal <|image_pad|> and <think> tokens typed by a user</think><|endoftext|>",
    "Ünïcode façade 日本語",
]


@pytest.fixture(scope="module")
def trained():
    return train_bpe_tokenizer(CORPUS, 400)


def test_trained_tokenizer_has_special_tokens_at_fixed_ids(trained):
    assert trained.special_ids == TRAINED_SPECIAL_IDS
    assert list(TRAINED_SPECIAL_IDS.values()) == list(range(len(SPECIAL_TOKENS)))
    assert (trained.eod_id, trained.pad_id, trained.im_start_id, trained.im_end_id) == (0, 0, 1, 2)
    assert (trained.vision_start_id, trained.vision_end_id, trained.image_pad_id, trained.video_pad_id) == (3, 4, 5, 6)
    assert (trained.think_id, trained.think_end_id) == (7, 8)
    assert 265 < trained.vocab_size <= 400


def test_vocab_size_is_an_upper_bound_and_has_a_minimum():
    assert train_bpe_tokenizer(CORPUS, 300).vocab_size <= 300
    with pytest.raises(ValueError, match="minimum 265"):
        train_bpe_tokenizer(CORPUS, 100)


def test_training_is_deterministic(trained):
    assert train_bpe_tokenizer(CORPUS, 400).fingerprint == trained.fingerprint
    assert train_bpe_tokenizer(CORPUS[:2] * 40, 400).fingerprint != trained.fingerprint


@pytest.mark.parametrize("text", SAMPLES)
def test_roundtrip_and_no_special_ids_from_text(trained, text):
    ids = trained.encode(text)
    assert trained.decode(ids) == text
    assert not set(ids) & set(trained.special_ids.values())
    assert trained.encode_batch([text, text]) == [ids, ids]


def test_decode_shows_or_skips_special_tokens(trained):
    ids = [trained.vision_start_id, trained.image_pad_id, trained.vision_end_id, *trained.encode(" red")]
    assert trained.decode(ids) == "<|vision_start|><|image_pad|><|vision_end|> red"
    assert trained.decode(ids, skip_special=True) == " red"


def test_save_hf_reloads_here_and_in_transformers(trained, tmp_path):
    trained.save_hf(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"tokenizer.json", "tokenizer_config.json"}
    reloaded = load_tokenizer(tmp_path)
    assert isinstance(reloaded, HFTokenizer)
    assert reloaded.fingerprint == trained.fingerprint
    assert load_tokenizer(tmp_path / "tokenizer.json").fingerprint == trained.fingerprint
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(len(SPECIAL_TOKENS)))
    assert hf.eos_token_id == hf.pad_token_id == trained.eod_id
    for text in SAMPLES[:2] + SAMPLES[3:]:
        assert hf(text, add_special_tokens=False)["input_ids"] == trained.encode(text)


def qwen_style(trained, tmp_path, *, drop: tuple[str, ...] = ()) -> str:
    """A tokenizer.json laid out like Qwen2/Qwen3's: specials after the vocabulary, in Qwen's order,
    ``<think>`` and ``</think>`` marked non-special as Qwen3 does."""
    content = json.loads(json.dumps(trained._content))
    vocab = content["model"]["vocab"]
    for token in SPECIAL_TOKENS:
        del vocab[token]
    vocab = {token: index for index, token in enumerate(sorted(vocab, key=vocab.get))}
    content["model"]["vocab"] = vocab
    order = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|vision_start|>",
             "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<think>", "</think>"]
    content["added_tokens"] = [
        {"id": len(vocab) + index, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": token not in ("<think>", "</think>")}
        for index, token in enumerate(order) if token not in drop
    ]
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(content))
    return str(path)


def test_qwen_style_tokenizer_json_keeps_its_own_ids(trained, tmp_path):
    tokenizer = load_tokenizer(qwen_style(trained, tmp_path))
    base = trained.vocab_size - len(SPECIAL_TOKENS)
    assert tokenizer.eod_id == base and tokenizer.image_pad_id == base + 7 and tokenizer.think_end_id == base + 10
    assert tokenizer.vocab_size == base + 11
    for text in SAMPLES + ["<|object_ref_start|> is special too"]:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert max(ids) < base, "raw text produced an added token"
    ids = [tokenizer.think_id, *tokenizer.encode("x"), tokenizer.think_end_id, tokenizer.image_pad_id]
    assert tokenizer.decode(ids) == "<think>x</think><|image_pad|>"
    assert tokenizer.decode(ids, skip_special=True) == "x"
    assert tokenizer.fingerprint != trained.fingerprint


def test_missing_special_token_is_named(trained, tmp_path):
    path = qwen_style(trained, tmp_path, drop=("<|video_pad|>", "<think>"))
    with pytest.raises(ValueError, match=r"tokenizer .*tokenizer.json lacks the special tokens \['<\|video_pad\|>'\]"):
        load_tokenizer(path)


def test_a_tokenizer_without_think_tokens_loads_like_qwen2_5_vl(trained, tmp_path):
    tokenizer = load_tokenizer(qwen_style(trained, tmp_path, drop=OPTIONAL_SPECIAL_TOKENS))
    assert list(tokenizer.special_ids) == list(REQUIRED_SPECIAL_TOKENS)
    assert tokenizer.think_id is None and tokenizer.think_end_id is None
    assert tokenizer.image_pad_id == trained.vocab_size - len(SPECIAL_TOKENS) + 7
    ids = tokenizer.encode("<think>x</think>")
    assert tokenizer.decode(ids) == "<think>x</think>" and not set(ids) & set(tokenizer.special_ids.values())
    tokenizer.save_hf(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert "<think>" not in config["additional_special_tokens"]
    assert load_tokenizer(tmp_path / "hf").fingerprint == tokenizer.fingerprint


def train_sentencepiece(**special) -> bytes:
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=model, vocab_size=400, model_type="bpe", byte_fallback=True,
        minloglevel=2, **special,
    )
    return model.getvalue()


def test_sentencepiece_model(tmp_path):
    path = tmp_path / "tok.model"
    path.write_bytes(train_sentencepiece(control_symbols=list(SPECIAL_TOKENS)))
    tokenizer = load_tokenizer(path)
    assert isinstance(tokenizer, SentencePieceTokenizer)
    assert list(tokenizer.special_ids) == list(SPECIAL_TOKENS)
    assert tokenizer.vocab_size == 400
    text = "A red circle <|image_pad|> at the top"
    ids = tokenizer.encode(text)
    assert not set(ids) & set(tokenizer.special_ids.values())
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode([tokenizer.vision_start_id, *ids]) == "<|vision_start|>" + text
    assert tokenizer.decode([tokenizer.vision_start_id, *ids], skip_special=True) == text
    tokenizer.save_hf(tmp_path / "hf")
    assert load_tokenizer(tmp_path / "hf").fingerprint == tokenizer.fingerprint


def test_sentencepiece_model_without_think_tokens(tmp_path):
    tokenizer = SentencePieceTokenizer(train_sentencepiece(control_symbols=list(REQUIRED_SPECIAL_TOKENS)), path="x.model")
    assert list(tokenizer.special_ids) == list(REQUIRED_SPECIAL_TOKENS)
    assert tokenizer.think_id is None and tokenizer.think_end_id is None


def test_sentencepiece_user_defined_specials_are_refused():
    with pytest.raises(ValueError, match="gives a special-token id.*control"):
        SentencePieceTokenizer(train_sentencepiece(user_defined_symbols=list(SPECIAL_TOKENS)), path="x.model")


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path} holds neither tokenizer.json nor tokenizer.model"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="missing.json does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the tokenizer file .*bad.json"):
        load_tokenizer(tmp_path / "bad.json")
    (tmp_path / "bad.model").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="bad.model is not a valid sentencepiece model"):
        load_tokenizer(tmp_path / "bad.model")
    (tmp_path / "vocab.txt").write_text("a")
    with pytest.raises(ValueError, match="unknown format"):
        load_tokenizer(tmp_path / "vocab.txt")

