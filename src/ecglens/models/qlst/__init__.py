"""qLST (Vessies et al. 2021): query-based latent space traversal that explains any classifier.

A frozen VAE (FactorECG's median-beat VAE) and a frozen classifier C; a small
traversal network learns, for a latent mean z, a statement and a target score
q, the latent step dz such that C(decode(z + dz)) scores q while the beat
changes as little as needed and stays where the VAE decodes realistic ECGs.
An explanation is then one forward pass instead of a per-record optimisation.
"""
from .adapters import (
                       BeatClassifierAdapter,
                       CallableAdapter,
                       DifferentiableClassifier,
                       FactorECGAdapter,
                       RecordClassifierAdapter,
                       RecordContext,
                       TorchPipeline,
                       adapter_for,
)
from .config import QLSTConfig
from .evaluate import (
                       evaluate_queries,
                       prior_log_density,
                       reconstruction_consistency,
                       success_rate,
)
from .losses import (
                       beat_rmse,
                       bernoulli_kl,
                       prior_loss,
                       prior_nll,
                       prior_radius_penalty,
                       proximity_weight,
                       qlst_loss,
                       target_loss,
)
from .network import QLST, Explanation, TraversalNetwork
from .optimize import optimize_latent
from .resynth import (
                       regular_peaks,
                       resynthesis_fidelity,
                       resynthesis_weights,
                       resynthesize,
)
from .train import (
                       QueryDataset,
                       load_classifier_adapter,
                       load_qlst,
                       load_vae_checkpoint,
                       sample_targets,
                       train_from_paths,
                       train_qlst,
)

__all__ = [
                       "QLST",
                       "BeatClassifierAdapter",
                       "CallableAdapter",
                       "DifferentiableClassifier",
                       "Explanation",
                       "FactorECGAdapter",
                       "QLSTConfig",
                       "QueryDataset",
                       "RecordClassifierAdapter",
                       "RecordContext",
                       "TorchPipeline",
                       "TraversalNetwork",
                       "adapter_for",
                       "beat_rmse",
                       "bernoulli_kl",
                       "evaluate_queries",
                       "load_classifier_adapter",
                       "load_qlst",
                       "load_vae_checkpoint",
                       "optimize_latent",
                       "prior_log_density",
                       "prior_loss",
                       "prior_nll",
                       "prior_radius_penalty",
                       "proximity_weight",
                       "qlst_loss",
                       "reconstruction_consistency",
                       "regular_peaks",
                       "resynthesis_fidelity",
                       "resynthesis_weights",
                       "resynthesize",
                       "sample_targets",
                       "success_rate",
                       "target_loss",
                       "train_from_paths",
                       "train_qlst",
]
