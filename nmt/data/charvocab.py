"""Character vocabulary for the character language model (tiny Shakespeare)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nmt.config import PAD_ID, UNK_ID

SPECIALS = ["<pad>", "<unk>"]
NOT_TEXT = (PAD_ID, UNK_ID)  # ids a sampler must never produce


class CharVocab:
    """Every character of the training text (``\\n`` included), sorted; pad=0, unk=1."""

    def __init__(self, chars: list[str]) -> None:
        self.itos = SPECIALS + [c for c in chars if c not in SPECIALS]
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        # Code point -> id table for fast vectorized encoding of the common (BMP) range.
        self._table = np.full(0x10000, UNK_ID, dtype=np.int64)
        for c, i in self.stoi.items():
            if len(c) == 1 and ord(c) < 0x10000:
                self._table[ord(c)] = i

    @classmethod
    def build(cls, text: str) -> CharVocab:
        return cls(sorted(set(text)))

    @property
    def size(self) -> int:
        return len(self.itos)

    def __len__(self) -> int:
        return self.size

    def encode(self, text: str) -> torch.Tensor:
        """``(len(text),)`` LongTensor of character ids (unknown characters -> unk)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.where(codes < 0x10000, self._table[np.minimum(codes, 0xFFFF)], UNK_ID)
        big = np.nonzero(codes >= 0x10000)[0]
        for j in big.tolist():  # rare astral characters, looked up one by one
            ids[j] = self.stoi.get(text[j], UNK_ID)
        return torch.from_numpy(ids)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Text of ids; pad is skipped."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.itos[i] for i in ids if i != PAD_ID)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "char_vocab", "chars": list(self.itos[len(SPECIALS) :])}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> CharVocab:
        return cls(list(state["chars"]))
