"""ProtoECGNet (Sethi et al., 2025): multi-branch prototype network for multi-label ECGs.

Rhythm (1D, record-level prototypes), morphology (2D, ~1 s prototypes that slide along
time) and global (2D, whole-record prototypes) branches, each with a class-connected last
layer, plus a masked or dense fusion classifier whose logits decompose exactly into
per-prototype contributions. Losses are pure functions in ``losses``.
"""
from .backbones import TimeGeometry, compose_time_geometry, window_input_span
from .branches import BRANCHES, branch_indices, load_branch_table
from .config import BranchConfig, ProtoECGNetConfig, default_branches
from .losses import (LossWeights, classification_loss, cluster_loss, contrastive_loss,
                     diversity_loss, l1_offclass_loss, pos_weight_from_labels, prototype_contrastive_loss, proximity_loss,
                     separation_loss, total_loss)
from .model import BranchOutput, Contributions, PrototypeBranch, ProtoECGNet, ProtoECGNetOutput
from .prototypes import ClassConnectedLinear, PrototypeLayer, SimilarityNorm, cosine_similarity_map

__all__ = [
    "BRANCHES", "BranchConfig", "BranchOutput", "ClassConnectedLinear", "Contributions", "LossWeights",
    "PrototypeBranch", "PrototypeLayer", "ProtoECGNet", "ProtoECGNetConfig", "ProtoECGNetOutput",
    "SimilarityNorm", "TimeGeometry", "branch_indices", "classification_loss", "cluster_loss",
    "compose_time_geometry", "contrastive_loss", "cosine_similarity_map",
    "default_branches", "diversity_loss", "l1_offclass_loss", "load_branch_table", "pos_weight_from_labels", "proximity_loss",
    "prototype_contrastive_loss", "separation_loss", "total_loss", "window_input_span",
]
