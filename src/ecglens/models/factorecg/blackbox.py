"""Black-box comparison: the VAE's encoder trained end to end as a median-beat classifier.

FactorECG compares its factor models against a network of the same capacity
that sees the same input (the median beat) but is trained directly on the
labels with binary cross-entropy; the gap between the two is the price of
explainability. ``BeatClassifier`` reuses ``BeatEncoder`` (the VAE's encoder
class), so the architectures cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import ECGError
from ...configs import config_from_dict, config_to_dict
from .config import FactorVAEConfig, check_encoder_settings, network_leads
from .vae import BeatEncoder, LeadAdapter


@dataclass(frozen=True)
class BeatClassifierConfig:
    """Encoder settings (as in ``FactorVAEConfig``) plus the statement head."""

    n_classes: int
    lead_mode: str = "8+derived"
    beat_samples: int = 120
    sampling_rate: float = 100.0
    channels: tuple[int, ...] = (32, 64, 128, 128)
    kernel_sizes: tuple[int, ...] = (7, 5, 5, 3)
    hidden_dim: int = 256
    dropout: float = 0.2
    lead_scale: tuple[float, ...] = (1.0,) * 12

    def __post_init__(self):
        check_encoder_settings(self.lead_mode, self.beat_samples, self.channels, self.kernel_sizes,
                               self.hidden_dim, self.lead_scale)
        if int(self.n_classes) < 1:
            raise ECGError(None, f"n_classes must be positive, got {self.n_classes}")
        if not 0 <= self.dropout < 1:
            raise ECGError(None, f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_vae_config(cls, vae_config: FactorVAEConfig, n_classes: int, dropout: float = 0.2) -> "BeatClassifierConfig":
        """The classifier matching a VAE's encoder (same leads, grid, widths, scale)."""
        return cls(n_classes=n_classes, lead_mode=vae_config.lead_mode, beat_samples=vae_config.beat_samples,
                   sampling_rate=vae_config.sampling_rate, channels=vae_config.channels,
                   kernel_sizes=vae_config.kernel_sizes, hidden_dim=vae_config.hidden_dim,
                   dropout=dropout, lead_scale=vae_config.lead_scale)

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BeatClassifierConfig":
        return config_from_dict(cls, d)


class BeatClassifier(nn.Module):
    """(B, 12, beat_samples) mV median beats -> (B, n_classes) statement logits."""

    def __init__(self, config: BeatClassifierConfig):
        super().__init__()
        self.config = config
        self.adapter = LeadAdapter(config.lead_mode, config.lead_scale, config.beat_samples)
        self.encoder = BeatEncoder(len(network_leads(config.lead_mode)), config.beat_samples, config.channels,
                                   config.kernel_sizes, config.hidden_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.feature_dim, config.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.encoder(self.adapter.to_network(x))))
