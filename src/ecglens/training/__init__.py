"""Shared training machinery (knows no model): Trainer, stage runner, DDP helpers, checkpoints, schedules."""
from .checkpoint import (
    CONFIG_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    load_config,
    load_extra,
    save_checkpoint,
    weights_digest,
)
from .distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup,
    default_device,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main,
    unwrap_model,
)
from .records import RecordDataset
from .resources import peak_rss_mib
from .schedule import make_optimizer, make_scheduler
from .stages import (
    STAGE_FILE,
    Stage,
    StageRun,
    StageRunner,
    provenance,
    run_training,
    skipped_facts,
)
from .trainer import (
    LOG_FILE,
    TrainConfig,
    Trainer,
    TrainResult,
    Validation,
    read_log,
    seed_everything,
    to_device,
)

__all__ = [
    "CONFIG_FILE", "LOG_FILE", "STAGE_FILE", "STATE_FILE", "WEIGHTS_FILE", "DistInfo", "RecordDataset", "Stage",
    "StageRun", "StageRunner", "TrainConfig", "TrainResult", "Trainer", "Validation", "all_gather_objects",
    "all_reduce_mean", "all_reduce_sum", "barrier", "broadcast_object", "cleanup", "default_device", "get_rank",
    "get_world_size", "init_distributed", "is_distributed", "is_main", "load_checkpoint", "load_config", "load_extra",
    "make_optimizer", "make_scheduler", "peak_rss_mib", "provenance", "read_log", "run_training", "save_checkpoint",
    "seed_everything", "skipped_facts", "to_device", "unwrap_model", "weights_digest",
]
