"""qLST checkpoints: the traversal network with the frozen VAE and classifier its config names.

A qLST checkpoint depends on two others. Its config stores each as a
reference (``path``, ``kind``, weights ``sha256``): the name of a model
shipped with ecglens, or a path relative to the qLST checkpoint's own
directory (absolute paths of runs saved by older versions still load). A
reference is never looked up in the current directory, so a same-named
folder there cannot stand in for it, and a run directory moved as a whole
still loads. The stored digests make loading fail if either dependency now
holds other weights.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...training import load_checkpoint, load_config, weights_digest
from ..loading import config_section, fit_weights, resolve_checkpoint
from .adapters import adapter_for
from .config import QLSTConfig
from .network import QLST, TraversalNetwork

KIND = "qlst"
DEPENDENCIES = ("vae", "classifier")


def relative_references(config: dict[str, Any], directory: str | os.PathLike) -> dict[str, Any]:
    """``config`` with its dependencies' paths made relative to the checkpoint ``directory`` it is saved in."""
    out = dict(config)
    for part in DEPENDENCIES:
        if part in out and out[part].get("path") and Path(out[part]["path"]).is_absolute():
            out[part] = {**out[part], "path": os.path.relpath(out[part]["path"], Path(directory).resolve())}
    return out


def resolve_reference(directory: Path, reference: str) -> Path:
    """A dependency's checkpoint: a shipped model's name, an absolute path, or a path relative to ``directory``."""
    from ...pretrained import pretrained_dir

    if "/" not in reference and os.sep not in reference and pretrained_dir(reference) is not None:
        return pretrained_dir(reference)
    path = Path(reference)
    return resolve_checkpoint(path if path.is_absolute() else directory / path)


def load_vae_checkpoint(path: str | os.PathLike, device: str = "cpu"):
    """A FactorECG VAE from a ``factorecg`` model, its VAE stage (``factorecg-vae``) or a run directory.

    Returns ``(vae, identity, beat)``: ``identity`` names the checkpoint
    (path, kind, weights digest) and ``beat`` is the ``BeatSettings`` dict it was trained with.
    """
    from ..factorecg.config import FactorVAEConfig
    from ..factorecg.data import BeatSettings
    from ..factorecg.vae import FactorVAE

    directory = resolve_checkpoint(path)
    if not (directory / "config.json").is_file() and (Path(path) / "vae" / "model" / "config.json").is_file():
        directory = Path(path) / "vae" / "model"
    kind = load_config(directory).get("kind")
    if kind not in ("factorecg", "factorecg-vae"):
        raise ConfigError(directory, f"not a FactorECG VAE checkpoint (kind {kind!r})")
    state, config = load_checkpoint(directory, device=device)
    prefix = "vae." if kind == "factorecg" else ""
    vae = fit_weights(FactorVAE(config_section(config, "vae", FactorVAEConfig, directory)),
                      {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, directory, "VAE").eval()
    beat = config.get("beat") or BeatSettings(beat_rate=vae.config.sampling_rate).to_dict()
    return vae, {"path": str(directory.resolve()), "kind": kind, "sha256": weights_digest(directory)}, beat


def load_classifier_adapter(path: str | os.PathLike, beat: dict, device: str = "cpu"):
    """A loaded classifier checkpoint wrapped in its differentiable adapter (``adapter_for``)."""
    from ..factorecg.data import BeatSettings
    from ..loading import load_classifier

    directory = resolve_checkpoint(path)
    clf = load_classifier(directory, device=device)
    settings = BeatSettings.from_dict(beat)
    identity = {"path": str(Path(directory).resolve()), "kind": clf.config.get("kind"),
                "label_set": clf.config.get("label_set"), "sha256": weights_digest(directory)}
    return adapter_for(clf, settings.beat_rate, settings.r_index, identity), clf


def _check_same_weights(directory, what: str, trained_with: dict, found: dict) -> None:
    """A traversal network only fits the VAE and classifier it was trained with: refuse others."""
    if trained_with.get("sha256") and trained_with["sha256"] != found["sha256"]:
        raise ConfigError(directory, f"trained with the {what} at {trained_with['path']} (weights sha256 "
                                     f"{trained_with['sha256'][:12]}...), but that checkpoint now holds other "
                                     f"weights ({found['sha256'][:12]}...); retrain qLST or restore that {what}")


def qlst_from_checkpoint(state: dict[str, Any], config: dict[str, Any], path=None, device=None, vae=None,
                         classifier=None) -> QLST:
    """The trained ``QLST`` of a checkpoint with the VAE and classifier its config names (unless given).
    ``qlst.checkpoint`` holds the config and ``qlst.record_classifier`` the loaded ``Classifier`` (None
    when ``classifier`` was given)."""
    directory = Path(path)
    device = device or "cpu"
    if config.get("kind") != KIND:
        raise ConfigError(directory, f"not a qLST checkpoint (kind {config.get('kind')!r})")
    cfg = config_section(config, "qlst", QLSTConfig, directory)
    for part in DEPENDENCIES:
        if not isinstance(config.get(part), dict) or not config[part].get("path"):
            raise ConfigError(directory, f"the config names no {part} checkpoint")
    if vae is None:
        vae, vae_id, _ = load_vae_checkpoint(resolve_reference(directory, config["vae"]["path"]), device=device)
        _check_same_weights(directory, "VAE", config["vae"], vae_id)
    record_classifier = None
    if classifier is None:
        classifier, record_classifier = load_classifier_adapter(
            resolve_reference(directory, config["classifier"]["path"]), config["beat"], device=device)
        _check_same_weights(directory, "classifier", config["classifier"], classifier.identity)
    network = fit_weights(TraversalNetwork(cfg), state, directory, "traversal network")
    qlst = QLST(network.to(device).eval(), vae.to(device), classifier, cfg)
    qlst.checkpoint = {**config, "path": str(directory)}
    qlst.record_classifier = record_classifier
    return qlst


def load_qlst(path: str | os.PathLike, vae=None, classifier=None, device: str = "cpu") -> QLST:
    """A trained ``QLST`` from its checkpoint (or run directory); see ``qlst_from_checkpoint``."""
    directory = resolve_checkpoint(path)
    state, config = load_checkpoint(directory, device=device)
    return qlst_from_checkpoint(state, config, directory, device, vae=vae, classifier=classifier)
