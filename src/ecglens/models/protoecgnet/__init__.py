"""ProtoECGNet (Sethi et al., 2025): multi-branch prototype network for multi-label ECGs.

Rhythm (1D, record-level prototypes), morphology (2D, ~1 s prototypes that slide along
time) and global (2D, whole-record prototypes) branches, each with a class-connected last
layer, plus a masked or dense fusion classifier whose logits decompose exactly into
per-prototype contributions. Losses are pure functions in ``losses``.

Exports are lazy (``ecglens._lazy``): importing the package imports no model code.
"""
from ..._lazy import lazy_exports

_EXPORTS = {
    "TimeGeometry": ".backbones",
    "compose_time_geometry": ".backbones",
    "window_input_span": ".backbones",
    "BRANCHES": ".branches",
    "branch_indices": ".branches",
    "load_branch_table": ".branches",
    "BranchConfig": ".config",
    "ProtoECGNetConfig": ".config",
    "default_branches": ".config",
    "LossWeights": ".losses",
    "classification_loss": ".losses",
    "cluster_loss": ".losses",
    "contrastive_loss": ".losses",
    "diversity_loss": ".losses",
    "jaccard_contrastive_loss": ".losses",
    "l1_offclass_loss": ".losses",
    "paper_loss_weights": ".losses",
    "pos_weight_from_labels": ".losses",
    "prototype_contrastive_loss": ".losses",
    "proximity_loss": ".losses",
    "separation_loss": ".losses",
    "total_loss": ".losses",
    "BranchOutput": ".model",
    "Contributions": ".model",
    "ProtoECGNet": ".model",
    "ProtoECGNetOutput": ".model",
    "PrototypeBranch": ".model",
    "ClassConnectedLinear": ".prototypes",
    "PrototypeLayer": ".prototypes",
    "SimilarityNorm": ".prototypes",
    "cosine_similarity_map": ".prototypes",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
