"""The FactorECG median-beat VAE: convolutional encoder, decoder, lead handling.

Beats enter and leave in mV as (batch, 12, beat_samples) in ``STANDARD_LEADS``
order. ``LeadAdapter`` picks the modelled leads and divides by the per-lead
scale on the way in, and on the way out multiplies back and (in
``"8+derived"`` mode) rebuilds III, aVR, aVL, aVF from I and II.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...errors import ECGError
from ...io.leads import STANDARD_LEADS
from .config import FactorVAEConfig, network_leads
from .losses import vae_loss


def ecg_lead_scale(beats: np.ndarray, floor: float = 0.01) -> tuple[float, ...]:
    """Per-lead scale (mV) for a set of median beats shaped (n, 12, samples).

    The standard deviation of each lead over all beats and samples, floored at
    ``floor`` mV so a flat lead does not blow up. Dividing by it gives the
    network O(1) inputs.
    """
    beats = np.asarray(beats, dtype=np.float64)
    if beats.ndim != 3 or beats.shape[1] != len(STANDARD_LEADS):
        raise ECGError(None, f"beats must be shaped (n, 12, samples), got {beats.shape}")
    if not np.all(np.isfinite(beats)):
        raise ECGError(None, f"beats hold {int(np.sum(~np.isfinite(beats)))} non-finite values")
    std = beats.transpose(1, 0, 2).reshape(len(STANDARD_LEADS), -1).std(axis=1)
    return tuple(float(max(s, floor)) for s in std)


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


def _conv_block(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
        nn.GroupNorm(_groups(c_out), c_out),
        nn.GELU(),
    )


def encoder_lengths(beat_samples: int, n_layers: int) -> list[int]:
    """Time length after each stride-2 layer (odd kernels, 'same' padding: ceil(L/2))."""
    lengths = [int(beat_samples)]
    for _ in range(n_layers):
        lengths.append((lengths[-1] + 1) // 2)
    return lengths


class LeadAdapter(nn.Module):
    """mV 12-lead beats <-> scaled network leads (8 or 12)."""

    def __init__(self, lead_mode: str, lead_scale: tuple[float, ...], beat_samples: int):
        super().__init__()
        self.lead_mode = lead_mode
        self.beat_samples = int(beat_samples)
        index = [STANDARD_LEADS.index(n) for n in network_leads(lead_mode)]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        scale = torch.tensor([float(lead_scale[i]) for i in index], dtype=torch.float32).unsqueeze(-1)
        self.register_buffer("scale", scale, persistent=False)

    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 12, T) mV -> (B, n_leads, T) network units."""
        if x.ndim != 3 or x.shape[1] != len(STANDARD_LEADS) or x.shape[2] != self.beat_samples:
            raise ECGError(None, f"expected beats shaped (batch, 12, {self.beat_samples}), got {tuple(x.shape)}")
        return x.index_select(1, self.index) / self.scale

    def to_mv(self, y: torch.Tensor) -> torch.Tensor:
        """(B, n_leads, T) network units -> (B, 12, T) mV, deriving limb leads in 8+derived mode."""
        y = y * self.scale
        if self.lead_mode == "12":
            return y
        lead_i, lead_ii = y[:, 0], y[:, 1]
        limb = [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2.0,
                lead_i - lead_ii / 2.0, lead_ii - lead_i / 2.0]
        return torch.cat([torch.stack(limb, dim=1), y[:, 2:]], dim=1)


class BeatEncoder(nn.Module):
    """Strided 1-D convolutions over time (leads as channels) -> a feature vector.

    Shared by the VAE (followed by mu/logvar heads) and the black-box beat
    classifier (followed by a linear head to the statements).
    """

    def __init__(self, in_leads: int, beat_samples: int, channels: tuple[int, ...],
                 kernel_sizes: tuple[int, ...], hidden_dim: int):
        super().__init__()
        widths = [int(in_leads), *[int(c) for c in channels]]
        self.convs = nn.Sequential(*[_conv_block(widths[i], widths[i + 1], int(kernel_sizes[i]), 2)
                                     for i in range(len(channels))])
        self.lengths = encoder_lengths(beat_samples, len(channels))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * self.lengths[-1], hidden_dim), nn.GELU())
        self.feature_dim = int(hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x))


class BeatDecoder(nn.Module):
    """Latent vector -> (B, out_leads, beat_samples) via linear layers and upsample+conv blocks.

    Each block doubles the length (linear upsampling avoids the checkerboard
    artefacts of transposed convolutions); the result, at least
    ``beat_samples`` long, is centre-cropped to exactly ``beat_samples``.
    """

    def __init__(self, out_leads: int, beat_samples: int, channels: tuple[int, ...],
                 kernel_sizes: tuple[int, ...], latent_dim: int, hidden_dim: int):
        super().__init__()
        self.beat_samples = int(beat_samples)
        widths = [int(c) for c in reversed(channels)]
        kernels = [int(k) for k in reversed(kernel_sizes)]
        self.start_length = encoder_lengths(beat_samples, len(channels))[-1]
        self.start_channels = widths[0]
        self.fc = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.GELU(),
                                nn.Linear(hidden_dim, widths[0] * self.start_length), nn.GELU())
        blocks = []
        for i, k in enumerate(kernels):
            c_out = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            blocks += [nn.Upsample(scale_factor=2, mode="linear", align_corners=False), _conv_block(widths[i], c_out, k, 1)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv1d(widths[-1], out_leads, kernels[-1], padding=kernels[-1] // 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.start_channels, self.start_length)
        y = self.out(self.blocks(h))
        start = (y.shape[-1] - self.beat_samples) // 2
        return y[..., start:start + self.beat_samples]


@dataclass
class VAEOutput:
    """A VAE forward pass: ``recon`` (B, 12, T) in mV; ``recon_net`` in network units."""

    recon: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    recon_net: torch.Tensor
    log_sigma_net: torch.Tensor | None = None  # (B, n_leads, T) with sigma_mode "per_sample"


class FactorVAE(nn.Module):
    """Median-beat VAE whose latent dimensions are the candidate ECG factors."""

    def __init__(self, config: FactorVAEConfig | None = None):
        super().__init__()
        cfg = config or FactorVAEConfig()
        self.config = cfg
        self.adapter = LeadAdapter(cfg.lead_mode, cfg.lead_scale, cfg.beat_samples)
        self.encoder = BeatEncoder(cfg.n_leads, cfg.beat_samples, cfg.channels, cfg.kernel_sizes, cfg.hidden_dim)
        self.mu_head = nn.Linear(self.encoder.feature_dim, cfg.latent_dim)
        self.logvar_head = nn.Linear(self.encoder.feature_dim, cfg.latent_dim)
        self.per_sample = cfg.sigma_mode == "per_sample"
        self.decoder = BeatDecoder(cfg.n_leads * (2 if self.per_sample else 1), cfg.beat_samples, cfg.channels,
                                   cfg.kernel_sizes, cfg.latent_dim, cfg.hidden_dim)
        init = torch.full((cfg.n_leads, 1), math.log(cfg.sigma_init))
        if cfg.sigma_mode == "learned":
            self.log_sigma = nn.Parameter(init)
        elif self.per_sample:  # the log-sigma channels start at sigma_init
            with torch.no_grad():
                self.decoder.out.bias[cfg.n_leads:] = math.log(cfg.sigma_init)
        else:
            self.register_buffer("log_sigma", init, persistent=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 12, T) mV -> posterior mean and log-variance, each (B, latent_dim)."""
        h = self.encoder(self.adapter.to_network(x))
        return self.mu_head(h), self.logvar_head(h)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) (differentiable sample)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def _decode_both(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, latent_dim) -> mean (B, n_leads, T) in network units and, per sample, log sigma (or None)."""
        y = self.decoder(z)
        if not self.per_sample:
            return y, None
        n = self.config.n_leads
        return y[:, :n], y[:, n:]

    def decode_network(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, n_leads, T) in network units (the likelihood's mean)."""
        return self._decode_both(z)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, 12, T) beats in mV."""
        return self.adapter.to_mv(self.decode_network(z))

    def forward(self, x: torch.Tensor, sample: bool | None = None) -> VAEOutput:
        """Encode, draw z (in training; the mean in eval unless ``sample``), decode."""
        mu, logvar = self.encode(x)
        sample = self.training if sample is None else sample
        z = self.reparameterize(mu, logvar) if sample else mu
        recon_net, log_sigma = self._decode_both(z)
        return VAEOutput(self.adapter.to_mv(recon_net), mu, logvar, z, recon_net, log_sigma)

    def observation_log_sigma(self, out: VAEOutput | None = None) -> torch.Tensor:
        """log sigma of the Gaussian likelihood, floored at sigma_min: per modelled lead, (n_leads, 1), or with
        sigma_mode "per_sample" the decoder's (B, n_leads, T) of the forward pass ``out``."""
        if self.per_sample:
            if out is None:
                raise ECGError(None, "per-sample sigma needs the forward pass it belongs to")
            return out.log_sigma_net.clamp_min(math.log(self.config.sigma_min))
        return self.log_sigma.clamp_min(math.log(self.config.sigma_min))

    def loss(self, x: torch.Tensor, beta: float, target: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The negative ELBO (beta-weighted KL) of a batch of mV beats, with logs.

        ``target`` (mV, shaped like ``x``): what the decoder must reproduce from ``x`` instead of ``x`` itself
        (an individual beat encoded, its record's median beat reconstructed: a denoising objective).
        """
        out = self(x)
        ref = x if target is None else target
        return vae_loss(out, self.adapter.to_network(ref), beta, self.observation_log_sigma(out))


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def encode_beats(vae: FactorVAE, beats: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and log-variances (n, latent_dim) of (n, 12, T) mV beats, in eval mode."""
    beats = np.asarray(beats, dtype=np.float32)
    was_training = vae.training
    vae.eval()
    mus, logvars = [], []
    try:
        with torch.no_grad():
            for start in range(0, len(beats), batch_size):
                mu, logvar = vae.encode(torch.from_numpy(beats[start:start + batch_size]).to(_device(vae)))
                mus.append(mu.cpu().numpy())
                logvars.append(logvar.cpu().numpy())
    finally:
        vae.train(was_training)
    dim = vae.config.latent_dim
    return (np.concatenate(mus) if mus else np.zeros((0, dim), np.float32),
            np.concatenate(logvars) if logvars else np.zeros((0, dim), np.float32))


def decode_latents(vae: nn.Module, z: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Decode latent vectors (n, latent_dim) to (n, 12, T) mV beats, in eval mode.

    Works with any module that has ``decode(z) -> (B, leads, T)``.
    """
    z = np.atleast_2d(np.asarray(z, dtype=np.float32))
    was_training = vae.training
    vae.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(z), batch_size):
                out.append(vae.decode(torch.from_numpy(z[start:start + batch_size]).to(_device(vae))).cpu().numpy())
    finally:
        vae.train(was_training)
    return np.concatenate(out)
