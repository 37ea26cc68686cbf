"""Text for the language-model chapter: the corpus found offline, splits by document, the model and sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from course_lib import text
from course_lib.models import CharTransformer, build_model
from course_lib.training import NextToken, TrainConfig, train

DOCUMENTS = [f"Saying number {i}: the quick brown fox jumps over the lazy dog." for i in range(60)]


def test_a_folder_of_txt_files_named_in_course_text_is_the_corpus(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("First paragraph.\n\nSecond one.\n")
    (tmp_path / "b.txt").write_text("Third.")
    monkeypatch.setenv(text.TEXT_ENV_VAR, str(tmp_path))
    files = text.corpus_files()
    assert [f.name for f in files] == ["a.txt", "b.txt"]
    assert text.read_documents(files) == ["First paragraph.", "Second one.", "Third."]


def test_fortune_entries_are_the_documents(tmp_path):
    path = tmp_path / "cookie"
    path.write_text("A fortune\non two lines.\n%\nAnother.\n%\n")
    assert text.read_documents([path]) == ["A fortune\non two lines.", "Another."]


def test_a_missing_corpus_says_both_ways_to_provide_one(tmp_path, monkeypatch):
    monkeypatch.setenv(text.TEXT_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(text.TextNotFoundError, match=r"apt-get install fortunes.*COURSE_TEXT"):
        text.corpus_files()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="holds no text"):
        text.read_documents([empty])


@pytest.mark.skipif(not text.FORTUNE_DIR.is_dir(), reason="Debian's fortunes is not installed")
def test_debians_fortunes_are_found_without_the_drawings(monkeypatch):
    monkeypatch.delenv(text.TEXT_ENV_VAR, raising=False)
    names = [f.name for f in text.corpus_files()]
    assert "fortunes" in names and "art" not in names and not any(n.endswith((".dat", ".u8")) for n in names)


def test_the_vocabulary_round_trips_and_names_characters_it_does_not_know():
    vocab = text.CharVocab.from_text("hello world")
    assert vocab.decode(vocab.encode("hello")) == "hello" and vocab.size == 8
    with pytest.raises(ValueError, match=r"\['!', 'z'\]"):
        vocab.encode("hello z!")


def test_splits_deal_whole_documents_and_each_y_is_x_shifted_by_one():
    splits, vocab = text.text_splits(DOCUMENTS, context=16, seed=3)
    x, y = splits.train.tensors
    assert x.shape[1] == y.shape[1] == 16 and torch.equal(x[:, 1:], y[:, :-1])
    parts = {name: vocab.decode(getattr(splits, name).tensors[0].flatten()) for name in ("train", "val", "test")}
    for number in range(60):  # a document is in one split only
        assert sum(f"number {number}:" in part for part in parts.values()) <= 1
    assert 0.7 < len(splits.train) / sum(splits.sizes().values()) < 0.9
    other, _ = text.text_splits(DOCUMENTS[:-1] + ["Something else entirely."], context=16, seed=3)
    assert other.key() != splits.key()  # the key carries a hash of the text: no stale cache for another corpus
    with pytest.raises(ValueError, match="fewer than 17 characters"):
        text.text_splits(DOCUMENTS[:3], context=16)


def test_the_transformer_is_causal_and_refuses_a_longer_context():
    model = build_model("char-transformer", seed=1, vocab_size=20, context=8, width=16, depth=2, heads=2)
    ids = torch.randint(0, 20, (3, 8))
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 20
    with torch.no_grad():
        assert torch.allclose(model(ids)[:, :5], model(changed)[:, :5], atol=1e-6)  # t < 5 never sees t >= 5
        assert model(ids).shape == (3, 8, 20)
    assert model.block_linears() == ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.fc1", "blocks.0.fc2",
                                     "blocks.1.attn.qkv", "blocks.1.attn.proj", "blocks.1.fc1", "blocks.1.fc2"]
    with pytest.raises(ValueError, match="at most 8 tokens"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_it_learns_through_the_course_loop_and_samples_reproducibly():
    splits, vocab = text.text_splits(DOCUMENTS, context=16, seed=0)
    model = CharTransformer(vocab.size, context=16, width=32, depth=1, heads=2)
    task = NextToken()
    before = task.score(model, splits.val)
    train(model, splits, TrainConfig(epochs=3, batch_size=16, lr=3e-3), task=task, progress=False)
    assert task.score(model, splits.val) < 0.6 * before  # the sentence repeats: most of it is learnable
    first, again = (text.generate(model, vocab, "the quick", 20, seed=4) for _ in range(2))
    assert first == again and len(first) == 20
    with pytest.raises(ValueError, match="at least one character"):
        text.generate(model, vocab, "", 5)
