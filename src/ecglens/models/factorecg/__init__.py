"""FactorECG (van de Leur et al., Eur Heart J Digit Health 2022): explainable ECG factors.

A VAE compresses the 12-lead median beat into a small latent vector; the
dimensions it actually uses (``active_factors``) are the ECG factors. Per
statement a logistic regression on the standardised factors gives a
prediction whose logit splits into per-factor contributions, and decoding
beats along a factor (``traverse_factor``) shows what the factor means.
"""
from .blackbox import BeatClassifier, BeatClassifierConfig
from .config import INDEPENDENT_LEADS, LEAD_MODES, FactorVAEConfig, network_leads
from .factors import (ActiveFactors, FactorContribution, FactorModelConfig, FactorModels, FactorStandardizer,
                      active_factors, factor_percentiles)
from .losses import gaussian_nll, kl_divergence, kl_elementwise, kl_warmup, vae_loss
from .traverse import NormalizationPath, associate_factors, describe_factor, toward_normal, traverse_factor
from .vae import (BeatDecoder, BeatEncoder, FactorVAE, LeadAdapter, VAEOutput, decode_latents, ecg_lead_scale,
                  encode_beats)

__all__ = [
    "ActiveFactors", "BeatClassifier", "BeatClassifierConfig", "BeatDecoder", "BeatEncoder", "FactorContribution",
    "FactorModelConfig", "FactorModels", "FactorStandardizer", "FactorVAE", "FactorVAEConfig", "INDEPENDENT_LEADS",
    "LEAD_MODES", "LeadAdapter", "NormalizationPath", "VAEOutput", "active_factors", "associate_factors",
    "decode_latents", "describe_factor", "ecg_lead_scale", "encode_beats", "factor_percentiles", "gaussian_nll",
    "kl_divergence", "kl_elementwise", "kl_warmup", "network_leads", "toward_normal", "traverse_factor", "vae_loss",
]
