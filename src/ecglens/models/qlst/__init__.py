"""qLST (Vessies et al. 2021): query-based latent space traversal that explains any classifier.

A frozen VAE (FactorECG's median-beat VAE) and a frozen classifier C; a small
traversal network learns, for a latent mean z, a statement and a target score
q, the latent step dz such that C(decode(z + dz)) scores q while the beat
changes as little as needed and stays where the VAE decodes realistic ECGs.
An explanation is then one forward pass instead of a per-record optimisation.

Exports are lazy (``ecglens._lazy``): importing the package imports no model code.
"""
from ..._lazy import lazy_exports

_EXPORTS = {
    "BeatClassifierAdapter": ".adapters",
    "CallableAdapter": ".adapters",
    "DifferentiableClassifier": ".adapters",
    "FactorECGAdapter": ".adapters",
    "RecordClassifierAdapter": ".adapters",
    "RecordContext": ".adapters",
    "TorchPipeline": ".adapters",
    "adapter_for": ".adapters",
    "QLSTConfig": ".config",
    "VARIANTS": ".config",
    "evaluate_queries": ".evaluate",
    "line_searched": ".evaluate",
    "nearest_real_uv": ".evaluate",
    "nn_two_sample_accuracy": ".evaluate",
    "realism_to_real": ".evaluate",
    "prior_log_density": ".evaluate",
    "reconstruction_consistency": ".evaluate",
    "success_rate": ".evaluate",
    "beat_mse": ".losses",
    "beat_rmse": ".losses",
    "linear_proximity_weight": ".losses",
    "proximity_loss": ".losses",
    "proximity_reference": ".losses",
    "bernoulli_kl": ".losses",
    "prior_loss": ".losses",
    "prior_nll": ".losses",
    "prior_radius_penalty": ".losses",
    "proximity_weight": ".losses",
    "qlst_loss": ".losses",
    "target_loss": ".losses",
    "Explanation": ".network",
    "QLST": ".network",
    "TraversalNetwork": ".network",
    "line_search": ".network",
    "optimize_latent": ".optimize",
    "regular_peaks": ".resynth",
    "resynthesis_fidelity": ".adapters",
    "resynthesis_weights": ".resynth",
    "resynthesize": ".resynth",
    "QueryDataset": ".train",
    "learnable_statements": ".train",
    "load_classifier_adapter": ".loading",
    "load_qlst": ".loading",
    "load_vae_checkpoint": ".loading",
    "sample_targets": ".train",
    "train_from_paths": ".train",
    "train_on_beats": ".train",
    "train_qlst": ".train",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
