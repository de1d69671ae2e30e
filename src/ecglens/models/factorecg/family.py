"""The FactorECG family's declaration (torch-free; read by ``models.registry``).

Two checkpoint kinds: the explainable factor model and the median-beat black
box trained on the same beats as its yardstick.
"""
from ..registry import CheckpointKind, ModelFamily, TrainCommand

FAMILY = ModelFamily(
    name="factorecg",
    description="median-beat VAE factors with one logistic regression per statement; each factor can be drawn",
    kinds=(CheckpointKind("factorecg", load="ecglens.models.factorecg.classifier:factorecg_from_checkpoint",
                          explainer="ecglens.explain.factorecg"),
           CheckpointKind("beat-blackbox", load="ecglens.models.factorecg.classifier:blackbox_from_checkpoint")),
    train=(TrainCommand("factorecg", "train FactorECG (median beats, VAE, factors, logistic models)",
                        add_arguments="ecglens.models.factorecg.options:add_arguments",
                        run="ecglens.models.factorecg.train:run",
                        function="ecglens.models.factorecg.train:train_factorecg"),
           TrainCommand("beat-blackbox", "train the median-beat black box (FactorECG's yardstick)",
                        add_arguments="ecglens.models.factorecg.options:add_blackbox_arguments",
                        run="ecglens.models.factorecg.train:run_blackbox",
                        function="ecglens.models.factorecg.train:train_beat_blackbox")),
    configs=("ecglens.models.factorecg.config:FactorVAEConfig", "ecglens.models.factorecg.train:FactorTrainConfig",
             "ecglens.models.factorecg.blackbox:BeatClassifierConfig", "ecglens.models.factorecg.data:BeatSettings"),
    stages=("vae", "factors", "factor_models"),
    citation="van de Leur RR et al. Improving explainability of deep neural network-based electrocardiogram "
             "interpretation using variational auto-encoders. Eur Heart J Digit Health 2022.",
)
