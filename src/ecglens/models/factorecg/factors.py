"""From VAE latents to explainable factors: active-factor rule, standardisation, factor models.

The pipeline after the VAE is trained: encode the training beats (posterior
means and log-variances), keep the *active* dimensions (those the VAE actually
uses), standardise them with training-set mean/std, and fit one interpretable
model per statement (logistic regression, or gradient-boosted trees with
exact TreeSHAP contributions) on the standardised factors and, optionally,
the record's rhythm features (``RhythmScaler``), which one beat cannot carry.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

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
    """One input's share of a statement's logit.

    ``factor`` is the latent index of a VAE factor or the name of a rhythm
    feature. Logistic models: ``contribution = coefficient * value``. Trees:
    ``contribution`` is the TreeSHAP value and ``coefficient`` is NaN.
    """

    factor: int | str
    coefficient: float
    value: float
    contribution: float


@dataclass
class RhythmScaler:
    """Rhythm features (``beats.rhythm.RHYTHM_FEATURES``) -> model inputs, with training-set statistics.

    A missing value (NaN: too few beats) becomes the training median; values
    are clipped to the training 1st-99th percentiles (RMSSD and the like are
    heavy-tailed), then z-scored with the clipped training mean and std (1
    for a feature constant over the training records).
    """

    names: list[str]
    median: list[float]
    low: list[float]
    high: list[float]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, features: np.ndarray, names) -> "RhythmScaler":
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(names) or not len(x):
            raise ECGError(None, f"rhythm features must be (records, {len(names)}), got {x.shape}")
        if np.isnan(x).all(axis=0).any():
            raise ECGError(None, "a rhythm feature is missing for every training record")
        med = np.nanmedian(x, axis=0)
        low, high = np.nanpercentile(x, 1, axis=0), np.nanpercentile(x, 99, axis=0)
        c = np.clip(np.where(np.isnan(x), med, x), low, high)
        std = c.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)  # constant in training: enters as 0 and contributes nothing
        return cls(list(names), med.tolist(), low.tolist(), high.tolist(), c.mean(axis=0).tolist(), std.tolist())

    def transform(self, features: np.ndarray) -> np.ndarray:
        """(n, len(names)) raw features (NaN allowed) -> (n, len(names)) model inputs."""
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if x.shape[1] != len(self.names):
            raise ECGError(None, f"expected {len(self.names)} rhythm features, got shape {x.shape}")
        x = np.clip(np.where(np.isnan(x), self.median, x), self.low, self.high)
        return (x - np.asarray(self.mean)) / np.asarray(self.std)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RhythmScaler":
        return cls(names=[str(n) for n in d["names"]],
                   **{k: [float(v) for v in d[k]] for k in ("median", "low", "high", "mean", "std")})


@dataclass(frozen=True)
class FactorModelConfig:
    """Per-statement classifiers on the standardised factors (and rhythm features, if any).

    ``kind="logistic"``: L2-penalised logistic regression with inverse strength
    ``C`` (logit = intercept + sum of coefficient x value).
    ``kind="gbt"``: histogram gradient-boosted trees (FactorECG's second model
    form), fitted with scikit-learn and stored as plain node arrays; a
    statement's logit is split into per-input TreeSHAP values
    (``Trees.shap``). ``gbt_early_stopping`` holds out 10 % of the training
    records (stratified, drawn with ``random_state``) to pick the number of
    trees, for statements with at least 10 records of each class (fewer
    cannot be split; those get ``gbt_max_iter`` trees).
    """

    kind: str = "logistic"
    C: float = 1.0
    class_weight: str | None = None
    max_iter: int = 2000
    gbt_max_iter: int = 200
    gbt_learning_rate: float = 0.1
    gbt_max_leaf_nodes: int = 31
    gbt_min_samples_leaf: int = 20
    gbt_l2: float = 0.0
    gbt_early_stopping: bool = False
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
_MIN_EARLY_STOPPING = 10
_TREE_FIELDS = ("feature", "threshold", "left", "right", "value", "cover", "missing_left")


@dataclass
class Trees:
    """Gradient-boosted trees of every statement as flat node arrays.

    Node ``i``: ``feature`` (-1 at a leaf), ``threshold`` (``x <= threshold``
    goes ``left``), ``left``/``right`` (absolute node indices), ``value`` (leaf
    output, shrinkage included), ``cover`` (training records reaching it),
    ``missing_left`` (where NaN goes). Tree ``t`` starts at node ``start[t]``
    and belongs to statement ``statement[t]``; a statement's logit is
    ``baseline[statement] + sum of its trees' leaf values``.
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    cover: np.ndarray
    missing_left: np.ndarray
    start: np.ndarray
    statement: np.ndarray
    baseline: np.ndarray

    @classmethod
    def from_sklearn(cls, estimators: dict, n_statements: int) -> "Trees":
        parts, starts, owner, offset = [], [], [], 0
        baseline = np.zeros(n_statements)
        for j, est in sorted(estimators.items()):
            baseline[j] = float(np.ravel(est._baseline_prediction)[0])
            for (pred,) in est._predictors:
                nodes = pred.nodes
                if nodes["is_categorical"].any():
                    raise ECGError(None, "categorical splits are not supported")
                leaf = nodes["is_leaf"].astype(bool)
                parts.append({"feature": np.where(leaf, -1, nodes["feature_idx"]).astype(np.int64),
                              "threshold": nodes["num_threshold"].astype(np.float64),
                              "left": np.where(leaf, -1, nodes["left"].astype(np.int64) + offset),
                              "right": np.where(leaf, -1, nodes["right"].astype(np.int64) + offset),
                              "value": nodes["value"].astype(np.float64), "cover": nodes["count"].astype(np.float64),
                              "missing_left": nodes["missing_go_to_left"].astype(np.int64)})
                starts.append(offset)
                owner.append(j)
                offset += len(nodes)
        cat = {f: np.concatenate([p[f] for p in parts]) if parts else np.zeros(0) for f in _TREE_FIELDS}
        return cls(**cat, start=np.asarray(starts, np.int64), statement=np.asarray(owner, np.int64), baseline=baseline)

    def leaves(self, x: np.ndarray, roots: np.ndarray) -> np.ndarray:
        """(n, len(roots)) leaf node reached by each record in each tree."""
        node = np.tile(roots[None, :], (len(x), 1))
        rows = np.arange(len(x))[:, None]
        while True:
            f = self.feature[node]
            inner = f >= 0
            if not inner.any():
                return node
            v = x[rows, np.where(inner, f, 0)]
            go_left = np.where(np.isnan(v), self.missing_left[node] == 1, v <= self.threshold[node])
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)

    def decision(self, x: np.ndarray, j: int) -> np.ndarray:
        """(n,) logits of statement ``j``."""
        roots = self.start[self.statement == j]
        return self.baseline[j] + self.value[self.leaves(x, roots)].sum(axis=1)

    def expected_value(self, j: int) -> float:
        """The cover-weighted mean logit of statement ``j`` (what TreeSHAP values are relative to)."""
        total = float(self.baseline[j])
        for root in self.start[self.statement == j]:
            stop = self.start[self.start > root].min(initial=len(self.value))
            nodes = np.arange(root, stop)
            leaf = nodes[self.feature[nodes] < 0]
            total += float((self.cover[leaf] * self.value[leaf]).sum() / self.cover[root])
        return total

    def shap(self, x: np.ndarray, j: int) -> np.ndarray:
        """(n_inputs,) TreeSHAP values of one record ``x`` for statement ``j``; they sum to
        ``decision(x, j) - expected_value(j)``."""
        phi = np.zeros(len(x))
        for root in self.start[self.statement == j]:
            _tree_shap(self, int(root), x, phi)
        return phi

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f"tree_{f}": np.ascontiguousarray(getattr(self, f)) for f in (*_TREE_FIELDS, "start", "statement")} | {
            "tree_baseline": np.ascontiguousarray(self.baseline)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Trees":
        ints = {"feature", "left", "right", "missing_left", "start", "statement"}
        return cls(**{f: np.asarray(arrays[f"tree_{f}"], dtype=np.int64 if f in ints else np.float64)
                      for f in (*_TREE_FIELDS, "start", "statement", "baseline")})


def _tree_shap(t: Trees, root: int, x: np.ndarray, phi: np.ndarray) -> None:
    """Add one tree's exact path-dependent TreeSHAP values (Lundberg et al. 2018, Algorithm 2) to ``phi``.

    The path ``m`` holds (feature, zero fraction, one fraction, weight) per
    split feature met on the way to a leaf; ``extend`` and ``unwind`` keep the
    weights equal to the Shapley permutation weights of every subset size.
    """
    def extend(m, pz, po, pi):
        m = [list(e) for e in m] + [[pi, pz, po, 1.0 if not m else 0.0]]
        n = len(m) - 1
        for i in range(n - 1, -1, -1):
            m[i + 1][3] += po * m[i][3] * (i + 1) / (n + 1)
            m[i][3] = pz * m[i][3] * (n - i) / (n + 1)
        return m

    def unwind(m, i):
        n = len(m) - 1
        m = [list(e) for e in m]
        carry = m[n][3]
        _, z, o, _ = m[i]
        for k in range(n - 1, -1, -1):
            if o != 0:
                w = m[k][3]
                m[k][3] = carry * (n + 1) / ((k + 1) * o)
                carry = w - m[k][3] * z * (n - k) / (n + 1)
            else:
                m[k][3] = m[k][3] * (n + 1) / (z * (n - k))
        for k in range(i, n):
            m[k][:3] = m[k + 1][:3]
        return m[:n]

    def recurse(node, m, pz, po, pi):
        m = extend(m, pz, po, pi)
        f = t.feature[node]
        if f < 0:
            for i in range(1, len(m)):
                w = sum(e[3] for e in unwind(m, i))
                phi[m[i][0]] += w * (m[i][2] - m[i][1]) * t.value[node]
            return
        v = x[f]
        left = bool(t.missing_left[node]) if np.isnan(v) else v <= t.threshold[node]
        hot, cold = (t.left[node], t.right[node]) if left else (t.right[node], t.left[node])
        iz = io = 1.0
        k = next((i for i in range(1, len(m)) if m[i][0] == f), None)
        if k is not None:
            iz, io = m[k][1], m[k][2]
            m = unwind(m, k)
        recurse(hot, m, iz * t.cover[hot] / t.cover[node], io, f)
        recurse(cold, m, iz * t.cover[cold] / t.cover[node], 0.0, f)

    recurse(root, [], 1.0, 1.0, -1)


@dataclass
class FactorModels:
    """One classifier per statement on the standardised active factors, then the rhythm features, if any.

    The inputs are ``n_factors`` standardised factors (``factor_indices``)
    followed by the ``features`` (rhythm feature names, scaled by a
    ``RhythmScaler``). Statements with a single class in the training labels
    cannot be fitted: they are listed in ``single_class`` (statement ->
    training prevalence, 0 or 1) and predicted as that prevalence; their logit
    is the logit of the prevalence clipped to [1e-6, 1 - 1e-6], with zero
    contributions.
    """

    statements: list[str]
    factor_indices: list[int]
    config: FactorModelConfig = field(default_factory=FactorModelConfig)
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    prevalence: np.ndarray | None = None
    single_class: dict[str, float] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    trees: Trees | None = field(default=None, repr=False)

    @property
    def inputs(self) -> list[int | str]:
        """What each input column is: a factor's latent index, then rhythm feature names."""
        return [*self.factor_indices, *self.features]

    def fit(self, z_std: np.ndarray, labels: np.ndarray) -> "FactorModels":
        """Fit on the inputs (n, len(inputs)) and 0/1 labels (n, n_statements)."""
        z = _finite_2d(z_std, "model inputs")
        y = np.asarray(labels)
        if y.ndim != 2 or y.shape != (len(z), len(self.statements)):
            raise ECGError(None, f"labels must be shaped ({len(z)}, {len(self.statements)}), got {y.shape}")
        if z.shape[1] != len(self.inputs):
            raise ECGError(None, f"{z.shape[1]} input columns but {len(self.inputs)} inputs")
        if not np.all(np.isin(y, (0, 1))):
            raise ECGError(None, "labels must be 0/1")
        y = y.astype(np.int64)
        k, f = y.shape[1], z.shape[1]
        self.coef, self.intercept = np.zeros((k, f)), np.zeros(k)
        self.prevalence = y.mean(axis=0).astype(np.float64)
        self.single_class = {}
        from sklearn.ensemble import HistGradientBoostingClassifier  # fitting only: loading a model needs no sklearn
        from sklearn.linear_model import LogisticRegression

        cfg, boosted = self.config, {}
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
                boosted[j] = HistGradientBoostingClassifier(
                    max_iter=cfg.gbt_max_iter, learning_rate=cfg.gbt_learning_rate,
                    max_leaf_nodes=cfg.gbt_max_leaf_nodes, min_samples_leaf=cfg.gbt_min_samples_leaf,
                    l2_regularization=cfg.gbt_l2,
                    early_stopping=cfg.gbt_early_stopping and min(np.bincount(y[:, j])) >= _MIN_EARLY_STOPPING,
                    class_weight=cfg.class_weight, random_state=cfg.random_state).fit(z, y[:, j])
        self.trees = Trees.from_sklearn(boosted, k) if cfg.kind == "gbt" else None
        return self

    def _check(self, z_std) -> np.ndarray:
        if self.coef is None:
            raise ECGError(None, "factor models are not fitted")
        z = np.atleast_2d(np.asarray(z_std, dtype=np.float64))
        if z.shape[1] != len(self.inputs):
            raise ECGError(None, f"expected {len(self.inputs)} input columns, got shape {z.shape}")
        return z

    def decision_function(self, z_std: np.ndarray) -> np.ndarray:
        """Logits (n, n_statements): intercept + z_std @ coef.T (logistic), baseline + leaf values (trees)."""
        z = self._check(z_std)
        out = z @ self.coef.T + self.intercept
        if self.trees is not None:
            for j, name in enumerate(self.statements):
                if name not in self.single_class:
                    out[:, j] = self.trees.decision(z, j)
        return out

    def predict_proba(self, z_std: np.ndarray) -> np.ndarray:
        """Probability of each statement, (n, n_statements)."""
        out = 1.0 / (1.0 + np.exp(-self.decision_function(z_std)))
        for name, p in self.single_class.items():
            out[:, self.statements.index(name)] = p
        return out

    def base_value(self, statement: str) -> float:
        """The logit the contributions start from: the intercept (logistic) or the expected logit (trees)."""
        j = self.statement_index(statement)
        if self.trees is None or statement in self.single_class:
            return float(self.intercept[j])
        return self.trees.expected_value(j)

    def contributions(self, z_std_row: np.ndarray, statement: str) -> list[FactorContribution]:
        """Each input's additive share of the statement's logit, largest |contribution| first.

        ``sum(c.contribution) + base_value(statement)`` equals the logit.
        """
        z = self._check(z_std_row)
        if len(z) != 1:
            raise ECGError(None, f"contributions take one record, got {len(z)}")
        j = self.statement_index(statement)
        if self.trees is None or statement in self.single_class:
            rows = [FactorContribution(_key(fi), float(c), float(v), float(c * v))
                    for fi, c, v in zip(self.inputs, self.coef[j], z[0])]
        else:
            rows = [FactorContribution(_key(fi), float("nan"), float(v), float(s))
                    for fi, v, s in zip(self.inputs, z[0], self.trees.shap(z[0], j))]
        return sorted(rows, key=lambda r: -abs(r.contribution))

    def statement_index(self, statement: str) -> int:
        if statement not in self.statements:
            raise ECGError(None, f"unknown statement {statement!r}; have {self.statements}")
        return self.statements.index(statement)

    def report(self) -> dict:
        """JSON-ready summary: statements fitted and those predicted as a constant prevalence."""
        return {"kind": self.config.kind, "n_statements": len(self.statements),
                "n_fitted": len(self.statements) - len(self.single_class), "features": list(self.features),
                "single_class": dict(self.single_class)}

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays (safetensors-ready: coef, intercept, prevalence, and the trees' node arrays) and a JSON-ready dict."""
        if self.coef is None:
            raise ECGError(None, "factor models are not fitted")
        arrays = {"coef": np.ascontiguousarray(self.coef), "intercept": np.ascontiguousarray(self.intercept),
                  "prevalence": np.ascontiguousarray(self.prevalence)}
        if self.trees is not None:
            arrays.update(self.trees.to_arrays())
        meta = {"statements": list(self.statements), "factor_indices": list(self.factor_indices),
                "features": list(self.features), "config": self.config.to_dict(),
                "single_class": dict(self.single_class)}
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> "FactorModels":
        """Rebuild factor models from ``to_state`` output (checkpoints without ``features`` have none)."""
        features = [str(f) for f in meta.get("features", [])]
        k, f = len(meta["statements"]), len(meta["factor_indices"]) + len(features)
        coef = np.asarray(arrays["coef"], dtype=np.float64)
        intercept = np.asarray(arrays["intercept"], dtype=np.float64)
        if coef.shape != (k, f) or intercept.shape != (k,):
            raise ECGError(None, f"factor model arrays {coef.shape}/{intercept.shape} do not match {k} statements x {f} inputs")
        config = FactorModelConfig.from_dict(meta["config"])
        trees = Trees.from_arrays(arrays) if config.kind == "gbt" else None
        return cls(statements=list(meta["statements"]), factor_indices=[int(i) for i in meta["factor_indices"]],
                   config=config, coef=coef, intercept=intercept,
                   prevalence=np.asarray(arrays["prevalence"], dtype=np.float64),
                   single_class={str(s): float(p) for s, p in meta["single_class"].items()}, features=features,
                   trees=trees)


def _key(f) -> int | str:
    return f if isinstance(f, str) else int(f)


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
