"""FactorECG (van de Leur et al., Eur Heart J Digit Health 2022): explainable ECG factors.

A VAE compresses the 12-lead median beat into a small latent vector; the
dimensions it actually uses (``active_factors``) are the ECG factors. Per
statement a logistic regression on the standardised factors gives a
prediction whose logit splits into per-factor contributions, and decoding
beats along a factor (``traverse_factor``) shows what the factor means.

Exports are lazy (``ecglens._lazy``): importing the package imports no model code.
"""
from ..._lazy import lazy_exports

_EXPORTS = {
    "BeatClassifier": ".blackbox",
    "BeatClassifierConfig": ".blackbox",
    "FactorVAEConfig": ".config",
    "INDEPENDENT_LEADS": ".config",
    "LEAD_MODES": ".config",
    "network_leads": ".config",
    "ActiveFactors": ".factors",
    "FactorContribution": ".factors",
    "FactorModelConfig": ".factors",
    "FactorModels": ".factors",
    "FactorStandardizer": ".factors",
    "active_factors": ".factors",
    "factor_percentiles": ".factors",
    "gaussian_nll": ".losses",
    "kl_divergence": ".losses",
    "kl_elementwise": ".losses",
    "kl_warmup": ".losses",
    "vae_loss": ".losses",
    "NormalizationPath": ".traverse",
    "associate_factors": ".traverse",
    "describe_factor": ".traverse",
    "toward_normal": ".traverse",
    "traverse_factor": ".traverse",
    "BeatDecoder": ".vae",
    "BeatEncoder": ".vae",
    "FactorVAE": ".vae",
    "LeadAdapter": ".vae",
    "VAEOutput": ".vae",
    "decode_latents": ".vae",
    "ecg_lead_scale": ".vae",
    "encode_beats": ".vae",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
