"""From VAE latents to explainable factors: active-factor rule, standardisation, factor models.

The pipeline after the VAE is trained: encode the training beats (posterior
means and log-variances), keep the *active* dimensions (those the VAE actually
uses), standardise them with training-set mean/std, and fit one interpretable
model per statement on the standardised factors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from ...errors import ECGError
from ...configs import config_from_dict, config_to_dict

ACTIVE_RULES = ("kl", "mu_variance")


def _finite_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ECGError(None, f"{name} must be 2-D (records, dims), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ECGError(None, f"{name} holds {int(np.sum(~np.isfinite(a)))} non-finite values")
    return a


@dataclass
class ActiveFactors:
    """Which latent dimensions carry information, and why.

    ``rule`` is ``"kl"`` (mean KL to the prior over the data set, in nats) or
    ``"mu_variance"`` (variance of the posterior mean across records); a
    dimension is active when its score under the rule exceeds ``threshold``.
    Both statistics are kept for every dimension.
    """

    rule: str
    threshold: float
    kl_per_dim: list[float]
    mu_variance: list[float]
    indices: list[int]

    @property
    def scores(self) -> list[float]:
        return self.kl_per_dim if self.rule == "kl" else self.mu_variance

    @property
    def n_active(self) -> int:
        return len(self.indices)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ActiveFactors":
        return cls(rule=d["rule"], threshold=float(d["threshold"]), kl_per_dim=[float(v) for v in d["kl_per_dim"]],
                   mu_variance=[float(v) for v in d["mu_variance"]], indices=[int(i) for i in d["indices"]])


def active_factors(mu: np.ndarray, logvar: np.ndarray, rule: str = "kl", threshold: float = 0.01) -> ActiveFactors:
    """Apply the active-factor rule to posterior means/log-variances (n, latent_dim).

    Inactive dimensions have collapsed to the prior (mu ~ 0, var ~ 1 for every
    record), so both their mean KL and the variance of mu across records are ~0.
    """
    mu = _finite_2d(mu, "mu")
    logvar = _finite_2d(logvar, "logvar")
    if mu.shape != logvar.shape or len(mu) == 0:
        raise ECGError(None, f"mu {mu.shape} and logvar {logvar.shape} must be the same non-empty shape")
    if rule not in ACTIVE_RULES:
        raise ECGError(None, f"unknown active-factor rule {rule!r}; expected one of {ACTIVE_RULES}")
    kl = (0.5 * (mu ** 2 + np.exp(logvar) - 1.0 - logvar)).mean(axis=0)
    var = mu.var(axis=0)
    score = kl if rule == "kl" else var
    return ActiveFactors(rule=rule, threshold=float(threshold), kl_per_dim=[float(v) for v in kl],
                         mu_variance=[float(v) for v in var], indices=[int(i) for i in np.flatnonzero(score > threshold)])


@dataclass
class FactorStandardizer:
    """z-scores of the active latent means, with the training set's mean and std."""

    latent_dim: int
    indices: list[int]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, mu: np.ndarray, indices: list[int] | ActiveFactors) -> "FactorStandardizer":
        """Mean/std of ``mu[:, indices]`` over the (training) records."""
        mu = _finite_2d(mu, "mu")
        idx = [int(i) for i in (indices.indices if isinstance(indices, ActiveFactors) else indices)]
        if not idx or min(idx) < 0 or max(idx) >= mu.shape[1]:
            raise ECGError(None, f"factor indices {idx} do not fit a latent of {mu.shape[1]} dims")
        sel = mu[:, idx]
        std = sel.std(axis=0)
        flat = [i for i, s in zip(idx, std) if not s > 1e-12]
        if flat:
            raise ECGError(None, f"factor(s) {flat} do not vary over the {len(mu)} records; cannot standardise")
        return cls(latent_dim=int(mu.shape[1]), indices=idx, mean=[float(v) for v in sel.mean(axis=0)],
                   std=[float(v) for v in std])

    def transform(self, mu: np.ndarray) -> np.ndarray:
        """(n, latent_dim) posterior means -> (n, n_active) standardised factors."""
        mu = np.atleast_2d(np.asarray(mu, dtype=np.float64))
        if mu.shape[1] != self.latent_dim:
            raise ECGError(None, f"expected latent vectors with {self.latent_dim} dims, got shape {mu.shape}")
        return (mu[:, self.indices] - np.asarray(self.mean)) / np.asarray(self.std)

    def to_latent(self, z_std: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """(n, n_active) standardised factors -> (n, latent_dim) latent vectors.

        Inactive dimensions come from ``base`` (a latent vector, e.g. the
        patient's), or 0 (the prior mean, which the decoder ignores anyway).
        """
        z_std = np.atleast_2d(np.asarray(z_std, dtype=np.float64))
        if z_std.shape[1] != len(self.indices):
            raise ECGError(None, f"expected {len(self.indices)} standardised factors, got shape {z_std.shape}")
        out = np.zeros((len(z_std), self.latent_dim)) if base is None else \
            np.tile(np.asarray(base, dtype=np.float64).reshape(1, self.latent_dim), (len(z_std), 1))
        out[:, self.indices] = z_std * np.asarray(self.std) + np.asarray(self.mean)
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FactorStandardizer":
        return cls(latent_dim=int(d["latent_dim"]), indices=[int(i) for i in d["indices"]],
                   mean=[float(v) for v in d["mean"]], std=[float(v) for v in d["std"]])


class FactorContribution(NamedTuple):
    """One factor's share of a statement's logit: ``contribution = coefficient * value``."""

    factor: int
    coefficient: float
    value: float
    contribution: float


@dataclass(frozen=True)
class FactorModelConfig:
    """Per-statement classifiers on standardised factors.

    ``kind="logistic"``: L2-penalised logistic regression with inverse strength
    ``C`` (the explainable model: logit = intercept + sum of contributions).
    ``kind="gbt"``: histogram gradient-boosted trees, a non-linear comparison;
    it gives probabilities but no additive contributions and is not saved to
    safetensors (``FactorModels.to_state`` refuses it; refit it from the factors).
    """

    kind: str = "logistic"
    C: float = 1.0
    class_weight: str | None = None
    max_iter: int = 2000
    gbt_max_iter: int = 200
    gbt_learning_rate: float = 0.1
    gbt_max_leaf_nodes: int = 31
    random_state: int = 0

    def __post_init__(self):
        if self.kind not in ("logistic", "gbt"):
            raise ECGError(None, f"factor model kind must be 'logistic' or 'gbt', got {self.kind!r}")
        if self.class_weight not in (None, "balanced"):
            raise ECGError(None, f"class_weight must be None or 'balanced', got {self.class_weight!r}")
        if not self.C > 0:
            raise ECGError(None, f"C must be positive, got {self.C}")

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FactorModelConfig":
        return config_from_dict(cls, d)


_PREVALENCE_CLIP = 1e-6


@dataclass
class FactorModels:
    """One classifier per statement on the standardised active factors.

    Statements with a single class in the training labels cannot be fitted:
    they are listed in ``single_class`` (statement -> training prevalence, 0 or
    1) and predicted as that prevalence; their logit is the logit of the
    prevalence clipped to [1e-6, 1 - 1e-6], with zero coefficients.
    """

    statements: list[str]
    factor_indices: list[int]
    config: FactorModelConfig = field(default_factory=FactorModelConfig)
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    prevalence: np.ndarray | None = None
    single_class: dict[str, float] = field(default_factory=dict)
    estimators: dict = field(default_factory=dict, repr=False)

    def fit(self, z_std: np.ndarray, labels: np.ndarray) -> "FactorModels":
        """Fit on standardised factors (n, n_factors) and 0/1 labels (n, n_statements)."""
        z = _finite_2d(z_std, "standardised factors")
        y = np.asarray(labels)
        if y.ndim != 2 or y.shape != (len(z), len(self.statements)):
            raise ECGError(None, f"labels must be shaped ({len(z)}, {len(self.statements)}), got {y.shape}")
        if z.shape[1] != len(self.factor_indices):
            raise ECGError(None, f"{z.shape[1]} factor columns but {len(self.factor_indices)} factor indices")
        if not np.all(np.isin(y, (0, 1))):
            raise ECGError(None, "labels must be 0/1")
        y = y.astype(np.int64)
        k, f = y.shape[1], z.shape[1]
        self.coef, self.intercept = np.zeros((k, f)), np.zeros(k)
        self.prevalence = y.mean(axis=0).astype(np.float64)
        self.single_class, self.estimators = {}, {}
        cfg = self.config
        for j, name in enumerate(self.statements):
            if len(np.unique(y[:, j])) < 2:
                p = float(self.prevalence[j])
                self.single_class[name] = p
                q = np.clip(p, _PREVALENCE_CLIP, 1 - _PREVALENCE_CLIP)
                self.intercept[j] = np.log(q / (1 - q))
                continue
            if cfg.kind == "logistic":
                est = LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, max_iter=cfg.max_iter)
                est.fit(z, y[:, j])
                self.coef[j] = est.coef_[0]
                self.intercept[j] = est.intercept_[0]
            else:
                est = HistGradientBoostingClassifier(max_iter=cfg.gbt_max_iter, learning_rate=cfg.gbt_learning_rate,
                                                     max_leaf_nodes=cfg.gbt_max_leaf_nodes,
                                                     class_weight=cfg.class_weight, random_state=cfg.random_state)
                est.fit(z, y[:, j])
            self.estimators[name] = est
        return self

    def _check(self, z_std) -> np.ndarray:
        if self.coef is None:
            raise ECGError(None, "factor models are not fitted")
        z = np.atleast_2d(np.asarray(z_std, dtype=np.float64))
        if z.shape[1] != len(self.factor_indices):
            raise ECGError(None, f"expected {len(self.factor_indices)} factor columns, got shape {z.shape}")
        return z

    def _need_linear(self, what: str):
        if self.config.kind != "logistic":
            raise ECGError(None, f"{what} needs the logistic factor models (kind={self.config.kind!r} is not additive)")

    def decision_function(self, z_std: np.ndarray) -> np.ndarray:
        """Logits (n, n_statements) = intercept + z_std @ coef.T (logistic models only)."""
        self._need_linear("decision_function")
        z = self._check(z_std)
        return z @ self.coef.T + self.intercept

    def predict_proba(self, z_std: np.ndarray) -> np.ndarray:
        """Probability of each statement, (n, n_statements)."""
        z = self._check(z_std)
        out = np.empty((len(z), len(self.statements)))
        for j, name in enumerate(self.statements):
            if name in self.single_class:
                out[:, j] = self.single_class[name]
            elif self.config.kind == "logistic":
                out[:, j] = 1.0 / (1.0 + np.exp(-(z @ self.coef[j] + self.intercept[j])))
            else:
                out[:, j] = self.estimators[name].predict_proba(z)[:, 1]
        return out

    def contributions(self, z_std_row: np.ndarray, statement: str) -> list[FactorContribution]:
        """Each factor's additive share of the statement's logit, largest |contribution| first.

        ``sum(c.contribution) + intercept(statement)`` equals the logit.
        """
        self._need_linear("contributions")
        z = self._check(z_std_row)
        if len(z) != 1:
            raise ECGError(None, f"contributions take one record, got {len(z)}")
        j = self.statement_index(statement)
        rows = [FactorContribution(int(fi), float(c), float(v), float(c * v))
                for fi, c, v in zip(self.factor_indices, self.coef[j], z[0])]
        return sorted(rows, key=lambda r: -abs(r.contribution))

    def statement_index(self, statement: str) -> int:
        if statement not in self.statements:
            raise ECGError(None, f"unknown statement {statement!r}; have {self.statements}")
        return self.statements.index(statement)

    def report(self) -> dict:
        """JSON-ready summary: statements fitted and those predicted as a constant prevalence."""
        return {"kind": self.config.kind, "n_statements": len(self.statements),
                "n_fitted": len(self.statements) - len(self.single_class),
                "single_class": dict(self.single_class)}

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays (safetensors-ready: coef, intercept, prevalence) and a JSON-ready dict.

        Only logistic models serialise this way; gradient-boosted trees are refit.
        """
        self._need_linear("to_state")
        if self.coef is None:
            raise ECGError(None, "factor models are not fitted")
        arrays = {"coef": np.ascontiguousarray(self.coef), "intercept": np.ascontiguousarray(self.intercept),
                  "prevalence": np.ascontiguousarray(self.prevalence)}
        meta = {"statements": list(self.statements), "factor_indices": list(self.factor_indices),
                "config": self.config.to_dict(), "single_class": dict(self.single_class)}
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> "FactorModels":
        """Rebuild logistic factor models from ``to_state`` output."""
        k, f = len(meta["statements"]), len(meta["factor_indices"])
        coef = np.asarray(arrays["coef"], dtype=np.float64)
        intercept = np.asarray(arrays["intercept"], dtype=np.float64)
        if coef.shape != (k, f) or intercept.shape != (k,):
            raise ECGError(None, f"factor model arrays {coef.shape}/{intercept.shape} do not match {k} statements x {f} factors")
        return cls(statements=list(meta["statements"]), factor_indices=[int(i) for i in meta["factor_indices"]],
                   config=FactorModelConfig.from_dict(meta["config"]), coef=coef, intercept=intercept,
                   prevalence=np.asarray(arrays["prevalence"], dtype=np.float64),
                   single_class={str(s): float(p) for s, p in meta["single_class"].items()})


def factor_percentiles(z_std: np.ndarray, reference_z_std: np.ndarray) -> np.ndarray:
    """Population percentile (0-100) of each factor value within a reference set.

    Percentile = 100 * (#reference below + 0.5 * #reference equal) / n, per
    factor column; ``z_std`` is one record (f,) or several (n, f).
    """
    ref = _finite_2d(reference_z_std, "reference factors")
    z = np.asarray(z_std, dtype=np.float64)
    single = z.ndim == 1
    z = np.atleast_2d(z)
    if z.shape[1] != ref.shape[1] or len(ref) == 0:
        raise ECGError(None, f"factor values {z.shape} and reference {ref.shape} need the same factor columns")
    out = np.empty_like(z)
    for j in range(ref.shape[1]):
        col = np.sort(ref[:, j])
        below = np.searchsorted(col, z[:, j], side="left")
        upto = np.searchsorted(col, z[:, j], side="right")
        out[:, j] = 100.0 * (below + 0.5 * (upto - below)) / len(col)
    return out[0] if single else out
