"""Preprocessed 10-s records as a training dataset, shared by the families that train on whole records."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from ..preprocess import Pipeline


class RecordDataset(Dataset):
    """``(signal, labels)`` items from preprocessed (n, 12, t) signals.

    ``transform`` is applied per item (e.g. a fitted ``Scale``, so the cache
    holds unscaled signals). With ``train=True`` each item is a random
    ``window``-sample crop, shifted by up to ``max_shift`` samples (zero fill);
    otherwise the whole record is returned. Randomness comes from torch's
    generator, which the trainer seeds and checkpoints.
    """

    def __init__(self, signals: np.ndarray, y: np.ndarray, sampling_rate: float, window: int, train: bool,
                 max_shift: int = 0, transform: Pipeline | None = None):
        self.signals, self.y = signals, np.asarray(y, dtype=np.float32)
        self.sampling_rate, self.window, self.train = sampling_rate, int(window), train
        self.max_shift, self.transform = int(max_shift), transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = np.array(self.signals[i], dtype=np.float32)
        if self.transform is not None:
            x = self.transform.apply_signal(x, self.sampling_rate)[0]
        if self.train:
            x = self._augment(x)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(self.y[i])

    def _augment(self, x: np.ndarray) -> np.ndarray:
        t = x.shape[-1]
        if t > self.window:
            start = int(torch.randint(0, t - self.window + 1, ()).item())
            x = x[:, start:start + self.window]
        elif t < self.window:
            x = np.pad(x, ((0, 0), (0, self.window - t)))
        if self.max_shift:
            shift = int(torch.randint(-self.max_shift, self.max_shift + 1, ()).item())
            out = np.zeros_like(x)
            if shift >= 0:
                out[:, shift:] = x[:, :x.shape[-1] - shift]
            else:
                out[:, :shift] = x[:, -shift:]
            x = out
        return x


__all__ = ["RecordDataset"]
