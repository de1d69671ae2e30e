"""FactorECG VAE configuration.

Defaults (our choices; tune per data set):

* ``lead_mode="8+derived"``: the network models the 8 independent leads
  (I, II, V1-V6) and the decoder's III, aVR, aVL, aVF are recomputed from I and
  II (Einthoven/Goldberger). Modelling all 12 (``"12"``, the reference
  FactorECG decoder's 12 channels) counts the limb information twice in the
  loss and lets the decoder draw beats that break Einthoven's law; on fold 9 it
  reconstructed about as well (``bench/results/factorecg_vae_search.md``) and
  the VAE of ``bench/work/runs/factorecg-vae2`` uses it.
* ``beat_samples=120`` at ``sampling_rate=100``: a 1.2 s median-beat window on
  PTB-XL's 100 Hz grid (FactorECG used 600 samples at 500 Hz; both are settings).
* ``beta=4``: a beta-VAE weight above 1 (Higgins et al. 2017) pushes the
  posterior towards the factorised prior, which both disentangles the factors
  and switches off the dimensions the data do not need, so only part of the 32
  stay active (FactorECG reports 21 of 32). With ``kl_warmup_epochs`` the KL
  weight ramps from 0 to ``beta`` so the encoder learns to reconstruct before
  the prior pressure starts (avoids posterior collapse early on).
* ``sigma_mode="learned"``: the Gaussian observation noise sigma is a learned
  per-lead parameter (a "sigma-VAE"), so the balance between reconstruction and
  KL does not hinge on a hand-set noise level; ``sigma_min`` (network units)
  bounds the likelihood. ``"fixed"`` keeps sigma at ``sigma_init``.
  ``"per_sample"``: the decoder predicts log sigma for every lead and sample
  beside the mean (the reference FactorECG decoder's variance output), so the
  likelihood can allow more error where beats vary (e.g. the T wave's end)
  and demand less elsewhere; starts at ``sigma_init``, floored at ``sigma_min``.
* ``lead_scale``: mV per network unit for each of the 12 standard leads; the
  network sees ``beat / lead_scale`` (O(1) values) and decoding returns mV.
  Median beats in mV are already O(1), so the default is 1; set it from the
  training beats with ``ecg_lead_scale``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...configs import config_from_dict, config_to_dict
from ...errors import ECGError
from ...io.leads import STANDARD_LEADS

LEAD_MODES = ("12", "8+derived")
SIGMA_MODES = ("learned", "fixed", "per_sample")
INDEPENDENT_LEADS: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


def network_leads(lead_mode: str) -> tuple[str, ...]:
    """The leads the network reads and writes for a lead mode."""
    if lead_mode == "12":
        return STANDARD_LEADS
    if lead_mode == "8+derived":
        return INDEPENDENT_LEADS
    raise ECGError(None, f"unknown lead_mode {lead_mode!r}; expected one of {LEAD_MODES}")


def check_encoder_settings(lead_mode, beat_samples, channels, kernel_sizes, hidden_dim, lead_scale) -> None:
    """Validate the settings the VAE and the black-box classifier share."""
    network_leads(lead_mode)
    if int(beat_samples) < 4:
        raise ECGError(None, f"beat_samples must be >= 4, got {beat_samples}")
    if not channels or len(channels) != len(kernel_sizes):
        raise ECGError(None, f"channels {channels} and kernel_sizes {kernel_sizes} must be non-empty and the same length")
    if any(int(c) < 1 for c in channels) or int(hidden_dim) < 1:
        raise ECGError(None, f"channel widths and hidden_dim must be positive, got {channels}, {hidden_dim}")
    if any(int(k) < 1 or int(k) % 2 == 0 for k in kernel_sizes):
        raise ECGError(None, f"kernel sizes must be odd and positive, got {kernel_sizes}")
    if len(lead_scale) != len(STANDARD_LEADS) or any(not (float(s) > 0) for s in lead_scale):
        raise ECGError(None, f"lead_scale must hold 12 positive values (one per standard lead), got {lead_scale}")


@dataclass(frozen=True)
class FactorVAEConfig:
    """Architecture and objective of the FactorECG median-beat VAE (see module doc)."""

    lead_mode: str = "8+derived"
    beat_samples: int = 120
    sampling_rate: float = 100.0
    latent_dim: int = 32
    channels: tuple[int, ...] = (32, 64, 128, 128)
    kernel_sizes: tuple[int, ...] = (7, 5, 5, 3)
    hidden_dim: int = 256
    beta: float = 4.0
    kl_warmup_epochs: int = 10
    likelihood: str = "gaussian"
    sigma_mode: str = "learned"
    sigma_init: float = 0.1
    sigma_min: float = 0.01
    lead_scale: tuple[float, ...] = (1.0,) * 12

    def __post_init__(self):
        check_encoder_settings(self.lead_mode, self.beat_samples, self.channels, self.kernel_sizes,
                               self.hidden_dim, self.lead_scale)
        if int(self.latent_dim) < 1:
            raise ECGError(None, f"latent_dim must be positive, got {self.latent_dim}")
        if self.likelihood != "gaussian":
            raise ECGError(None, f"unknown likelihood {self.likelihood!r}; only 'gaussian' is implemented")
        if self.sigma_mode not in SIGMA_MODES:
            raise ECGError(None, f"sigma_mode must be one of {SIGMA_MODES}, got {self.sigma_mode!r}")
        if not (0 < self.sigma_min <= self.sigma_init):
            raise ECGError(None, f"need 0 < sigma_min <= sigma_init, got {self.sigma_min}, {self.sigma_init}")
        if self.beta < 0 or self.kl_warmup_epochs < 0:
            raise ECGError(None, f"beta and kl_warmup_epochs must be >= 0, got {self.beta}, {self.kl_warmup_epochs}")
        if not self.sampling_rate > 0:
            raise ECGError(None, f"sampling_rate must be positive, got {self.sampling_rate}")

    @property
    def leads(self) -> tuple[str, ...]:
        """The leads the network models (8 or 12)."""
        return network_leads(self.lead_mode)

    @property
    def n_leads(self) -> int:
        """Number of leads the network models; decoding always returns all 12."""
        return len(self.leads)

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FactorVAEConfig":
        return config_from_dict(cls, d)
