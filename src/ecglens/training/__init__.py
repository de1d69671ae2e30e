"""Shared training machinery (knows no model): Trainer, DDP helpers, checkpoints, schedules."""
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
from .resources import peak_rss_mib
from .schedule import make_optimizer, make_scheduler
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
    "CONFIG_FILE", "LOG_FILE", "STATE_FILE", "WEIGHTS_FILE", "DistInfo", "TrainConfig", "TrainResult", "Trainer",
    "Validation", "all_gather_objects", "all_reduce_mean", "all_reduce_sum", "barrier", "broadcast_object", "cleanup",
    "default_device", "get_rank", "get_world_size", "init_distributed", "is_distributed", "is_main", "load_checkpoint",
    "load_config", "load_extra", "make_optimizer", "make_scheduler", "read_log", "save_checkpoint", "seed_everything",
    "peak_rss_mib", "to_device", "unwrap_model", "weights_digest",
]
