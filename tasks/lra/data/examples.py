"""The one shape every LRA reader returns: token id sequences, labels and example ids for a split."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PAD_ID = 0  # every vocabulary reserves id 0 for padding
BYTE_OFFSET = 1  # byte and pixel value b becomes token b + 1


@dataclass
class Examples:
    """One split. ``inputs`` holds one list of sequences per model input (retrieval has two)."""

    inputs: tuple[list[np.ndarray], ...]
    labels: np.ndarray
    ids: list[str]

    def __post_init__(self):
        sizes = {len(self.labels), len(self.ids), *(len(seqs) for seqs in self.inputs)}
        if len(sizes) != 1:
            raise ValueError(f"inconsistent split: inputs, labels and ids have lengths {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int]) -> Examples:
        return Examples(
            tuple([seqs[i] for i in indices] for seqs in self.inputs),
            self.labels[np.asarray(indices, dtype=np.int64)],
            [self.ids[i] for i in indices],
        )

    @staticmethod
    def concat(parts: Sequence[Examples]) -> Examples:
        n_inputs = len(parts[0].inputs)
        return Examples(
            tuple([s for part in parts for s in part.inputs[k]] for k in range(n_inputs)),
            np.concatenate([part.labels for part in parts]),
            [i for part in parts for i in part.ids],
        )


def encode_bytes(text: bytes, max_len: int | None) -> np.ndarray:
    """Byte-level tokens (byte + 1), truncated to ``max_len``: LRA's Text and Retrieval encoding."""
    data = np.frombuffer(text[:max_len] if max_len else text, dtype=np.uint8)
    return data.astype(np.int16) + BYTE_OFFSET
