"""The qLST family's declaration (torch-free; read by ``models.registry``).

qLST explains another classifier through FactorECG's VAE; it predicts nothing itself.
"""
from ..registry import CheckpointKind, ModelFamily, TrainCommand

FAMILY = ModelFamily(
    name="qlst",
    description="query-based latent space traversal: what would change a classifier's score to a queried value",
    kinds=(CheckpointKind("qlst", load="ecglens.models.qlst.loading:qlst_from_checkpoint", predicts=False,
                          explainer="ecglens.explain.qlst",
                          instead="qLST explains another classifier; predict with the classifier it was trained on "
                                  "(the model's .classifier_path, or `ecglens predict` on that checkpoint)"),),
    train=(TrainCommand("qlst", "train a qLST traversal network for a VAE and a classifier",
                        add_arguments="ecglens.models.qlst.options:add_arguments",
                        run="ecglens.models.qlst.train:run",
                        function="ecglens.models.qlst.train:train_from_paths", calibrate=False),),
    configs=("ecglens.models.qlst.config:QLSTConfig",),
    stages=("qlst",),
    citation="Vessies MB et al. Interpretable ECG classification via a query-based latent space traversal (2021).",
)
