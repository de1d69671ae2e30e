"""The baseline family's declaration (torch-free; read by ``models.registry``)."""
from ..registry import CheckpointKind, ModelFamily, TrainCommand

FAMILY = ModelFamily(
    name="baseline",
    description="black-box xresnet1d on sliding windows, the yardstick (our default and the PTB-XL benchmark recipe)",
    kinds=(CheckpointKind("baseline", load="ecglens.models.baseline.config:classifier_from_checkpoint"),),
    train=(TrainCommand("baseline", "train the black-box xresnet1d baseline",
                        add_arguments="ecglens.models.baseline.options:add_arguments",
                        run="ecglens.models.baseline.train:run",
                        function="ecglens.models.baseline.train:train_baseline"),),
    recipes="ecglens.models.baseline.config:RECIPES",
    configs=("ecglens.models.baseline.config:BaselineConfig", "ecglens.models.xresnet1d.config:XResNetConfig"),
    stages=("baseline",),
    citation="Strodthoff N et al. Deep learning for ECG analysis: benchmarks and insights from PTB-XL. IEEE JBHI 2021.",
)
