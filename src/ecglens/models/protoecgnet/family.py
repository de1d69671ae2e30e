"""The ProtoECGNet family's declaration (torch-free; read by ``models.registry``)."""
from ..registry import CheckpointKind, ModelFamily, TrainCommand

FAMILY = ModelFamily(
    name="protoecgnet",
    description="multi-branch prototype network: each logit is a sum of similarities to real training ECG windows",
    kinds=(CheckpointKind("protoecgnet", load="ecglens.models.protoecgnet.classifier:protoecgnet_from_checkpoint",
                          explainer="ecglens.explain.protoecgnet"),),
    train=(TrainCommand("protoecgnet", "train ProtoECGNet (warm-up, joint, projection, refine, heads)",
                        add_arguments="ecglens.models.protoecgnet.options:add_arguments",
                        run="ecglens.models.protoecgnet.train:run",
                        function="ecglens.models.protoecgnet.train:train_protoecgnet"),),
    configs=("ecglens.models.protoecgnet.recipe:ProtoTrainConfig", "ecglens.models.protoecgnet.config:ProtoECGNetConfig"),
    stages=("warmup", "joint", "projection", "refine", "reprojection", "last_layer", "fusion"),
    citation="Sethi S et al. ProtoECGNet: case-based interpretable deep learning for multi-label ECG "
             "classification with contrastive learning (2025).",
)
