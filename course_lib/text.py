"""Plain English text for the language-model chapter: found offline, split by document, cut into windows.

The course's text is Debian's ``fortunes`` package (``apt-get install fortunes``): a few megabytes of quotations,
jokes and aphorisms in plain ASCII files under ``/usr/share/games/fortunes``, one file per topic, entries separated
by a line holding only ``%``. BSD fortune's files are freely redistributable (the package's copyright file says
which licence covers which file). Any other plain text works too: set ``COURSE_TEXT`` to a ``.txt`` file or a
folder of them (documents separated by blank lines).

The model reads characters (:class:`CharVocab`), so nothing is downloaded: no tokenizer, no hub. Documents are
shuffled with the split seed and dealt to train, validation and test whole, so no sentence is in two splits; each
split is cut into windows of ``context + 1`` characters, the input ``x`` and its next characters ``y``
(:class:`~course_lib.training.tasks.NextToken`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from course_lib.data import DataSplits
from course_lib.devices import model_device

TEXT_ENV_VAR = "COURSE_TEXT"
FORTUNE_DIR = Path("/usr/share/games/fortunes")
NOT_PROSE = ("art", "ascii-art")  # fortune files of drawings, not sentences
SEPARATOR = "\n\n"  # between two documents of a split


class TextNotFoundError(FileNotFoundError):
    """No corpus where the course looks for one."""


def _where_to_get_it(looked: Sequence[Path]) -> str:
    return ("No plain text was found (looked in: " + ", ".join(str(p) for p in looked) + "). Either install Debian's "
            "fortunes (sudo apt-get install fortunes), or set COURSE_TEXT to a .txt file or a folder of .txt files, "
            "e.g. export COURSE_TEXT=~/books.")


def corpus_files(source: str | Path | None = None) -> list[Path]:
    """The text files of the corpus: ``source``, else ``$COURSE_TEXT``, else the Debian fortune files (sorted)."""
    chosen = source or os.environ.get(TEXT_ENV_VAR)
    if chosen:
        path = Path(chosen).expanduser()
        files = [path] if path.is_file() else sorted(path.glob("*.txt")) if path.is_dir() else []
        if not files:
            raise TextNotFoundError(_where_to_get_it([path]))
        return files
    files = sorted(p for p in FORTUNE_DIR.glob("*") if p.is_file() and not p.suffix and p.name not in NOT_PROSE) \
        if FORTUNE_DIR.is_dir() else []
    if not files:
        raise TextNotFoundError(_where_to_get_it([FORTUNE_DIR]))
    return files


def read_documents(files: Sequence[Path]) -> list[str]:
    """Every document of ``files``: fortune entries (between ``%`` lines) or paragraphs (between blank lines),
    stripped, tabs turned to spaces; empty ones dropped."""
    documents = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n").replace("\t", "    ")
        parts = text.split("\n%\n") if "\n%\n" in text else text.split("\n\n")
        documents += [part.strip("\n%").strip() for part in parts]
    documents = [d for d in documents if d]
    if not documents:
        raise ValueError(f"the corpus ({', '.join(p.name for p in files)}) holds no text: give files with sentences.")
    return documents


@dataclass(frozen=True)
class CharVocab:
    """The characters a model reads and writes, one id each (sorted, so the same text gives the same ids)."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids of ``text`` (int64); a character outside the vocabulary is named in the error."""
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(f"characters outside the model's vocabulary: {unknown!r}. Write with the "
                             f"{self.size} characters the model was trained on.")
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def _windows(ids: torch.Tensor, context: int) -> TensorDataset:
    """Non-overlapping windows of ``context + 1`` ids: inputs ``x`` and next tokens ``y`` (both ``[N, context]``)."""
    count = (len(ids) - 1) // context
    x = ids[:count * context].reshape(count, context)
    y = ids[1:count * context + 1].reshape(count, context)
    return TensorDataset(x, y)


def text_splits(documents: Sequence[str], context: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                seed: int = 0, name: str = "fortunes") -> tuple[DataSplits, CharVocab]:
    """Documents shuffled with ``seed`` and dealt whole to train / validation / test by share of characters, each
    split cut into windows of ``context`` inputs. The vocabulary covers every character of the corpus.

    The splits' name carries a hash of the text, so that a cached result can never belong to another corpus.
    """
    if context < 1:
        raise ValueError(f"context must be at least 1 character, got {context}.")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions are the shares of train, validation and test: three positive numbers that sum "
                         f"to 1, got {fractions}.")
    vocab = CharVocab.from_text("".join(documents) + SEPARATOR)
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed)).tolist()
    total, dealt, parts = sum(len(d) for d in documents), 0, ([], [], [])
    bounds = (fractions[0] * total, (fractions[0] + fractions[1]) * total)
    for i in order:
        parts[0 if dealt < bounds[0] else 1 if dealt < bounds[1] else 2].append(documents[i])
        dealt += len(documents[i])
    sets = [_windows(vocab.encode(SEPARATOR.join(part)), context) for part in parts]
    short = [n for n, s in zip(("train", "validation", "test"), sets) if len(s) == 0]
    if short:
        raise ValueError(f"the {', '.join(short)} split holds fewer than {context + 1} characters: use more text or a "
                         f"shorter context.")
    digest = hashlib.sha256("\x00".join(documents).encode()).hexdigest()[:12]
    return DataSplits(*sets, classes=tuple(vocab.chars), name=f"{name}-{digest}-context{context}", seed=seed), vocab


@torch.no_grad()
def generate(model: nn.Module, vocab: CharVocab, prompt: str, length: int, seed: int = 0,
             temperature: float = 1.0) -> str:
    """Continue ``prompt`` by ``length`` characters, each drawn from the model's next-character distribution.

    Seeded, so the same model, prompt and seed give the same text; ``temperature`` below 1 sharpens the
    distribution (towards the most likely character), above 1 flattens it. The model sees at most its last
    ``model.context`` characters.
    """
    if not prompt:
        raise ValueError("give a prompt of at least one character.")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    ids, generator, device = vocab.encode(prompt), torch.Generator().manual_seed(seed), model_device(model)
    was_training = model.training
    model.eval()
    for _ in range(length):
        logits = model(ids[-model.context:][None].to(device))[0, -1].float().cpu()
        ids = torch.cat([ids, torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)])
    model.train(was_training)
    return vocab.decode(ids[len(prompt):])
