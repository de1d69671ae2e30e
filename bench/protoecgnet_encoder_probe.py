"""Case-based prototypes on the baseline's encoder (issue 25 diagnostic, fold 9 only).

``protoecgnet_backbones.md`` shows ProtoECGNet's own backbones stop near 0.90 on fold 9 even without prototypes,
against the baseline's 0.922. This asks the next question: what does a case-based head cost on the baseline's
encoder? The shipped baseline network (trained on folds 1-8) gives every record one vector, its features averaged
over the whole 10-s record. Then, fitted on folds 1-8 and scored on fold 9:

* ``linear``: a logistic regression per statement on the vectors (what the encoder carries; no cases).
* ``cases``: ``k`` prototypes per statement, each a real training record: k-means of the statement's positive
  records' vectors, each centre replaced by its nearest positive record (the projection onto a real case).
  Similarity: cosine between a record's vector and each prototype's. Per statement, a logistic regression on its
  own prototypes' similarities only (the class-connected head; like ProtoECGNet's pooled rhythm prototypes).
* ``cases-dense``: one logistic regression per statement on all prototypes' similarities.

Usage: ``python bench/protoecgnet_encoder_probe.py [--k 3] [--C 1.0]``; writes
``bench/results/protoecgnet_encoder_probe.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import protoecgnet_finetune as ft  # noqa: E402
import torch  # noqa: E402

from ecglens.atomic import write_json_atomic, write_text_atomic  # noqa: E402


def record_vectors(net, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """(n, features): the network's last feature map averaged over time, per record."""
    from ecglens.models import layout

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            h = net.features(layout.channels_last_1d(torch.tensor(x[i:i + batch])))
            out.append(h.flatten(2).mean(-1).numpy())
    return np.concatenate(out)


def case_prototypes(f: np.ndarray, y: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``f`` chosen as prototypes and their statements: per statement, the positive record nearest each of
    ``k`` k-means centres of its positives (fewer when it has fewer distinct positives)."""
    from sklearn.cluster import KMeans

    rows, labels = [], []
    for c in range(y.shape[1]):
        pos = np.flatnonzero(y[:, c] > 0.5)
        if not len(pos):
            continue
        n = min(k, len(pos))
        centres = KMeans(n, n_init=4, random_state=seed).fit(f[pos]).cluster_centers_ if n > 1 else f[pos]
        chosen = {int(pos[np.argmin(((f[pos] - ctr) ** 2).sum(1))]) for ctr in centres}
        rows += sorted(chosen)
        labels += [c] * len(chosen)
    return np.asarray(rows), np.asarray(labels)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-8)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-8)
    return a @ b.T


def fit_score(train: np.ndarray, y: np.ndarray, val: np.ndarray, C: float, columns=None) -> np.ndarray:
    """Fold-9 decision values of one logistic regression per statement (``columns[c]``: its input columns)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scores = np.zeros((len(val), y.shape[1]))
    for c in range(y.shape[1]):
        if y[:, c].min() == y[:, c].max():
            continue
        cols = slice(None) if columns is None else columns[c]
        scaler = StandardScaler().fit(train[:, cols])
        lr = LogisticRegression(C=C, max_iter=2000).fit(scaler.transform(train[:, cols]), y[:, c])
        scores[:, c] = lr.decision_function(scaler.transform(val[:, cols]))
    return scores


def main(argv=None) -> int:
    from ecglens.api import load_model
    from ecglens.metrics import macro_auroc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=3, help="prototypes per statement")
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regressions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ptb-xl")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    t0 = time.time()
    clf = load_model("baseline").loaded
    _, folds, _ = ft.load_folds(clf.pipeline, args.data)
    del folds["test"]
    (_, x_tr, y_tr), (_, x_va, y_va) = folds["train"], folds["val"]
    net = clf.model.eval()
    f_tr, f_va = record_vectors(net, x_tr), record_vectors(net, x_va)
    with clf.raw():
        shipped = macro_auroc(y_va, clf.predict_batch(x_va, clf.sampling_rate))[0]
    rows, proto_label = case_prototypes(f_tr, y_tr, args.k, args.seed)
    s_tr, s_va = cosine(f_tr, f_tr[rows]), cosine(f_va, f_tr[rows])
    own = [np.flatnonzero(proto_label == c) for c in range(y_tr.shape[1])]
    result = {
        "k": args.k, "C": args.C, "seed": args.seed, "features": int(f_tr.shape[1]), "prototypes": int(len(rows)),
        "baseline_shipped": shipped,
        "linear": macro_auroc(y_va, fit_score(f_tr, y_tr, f_va, args.C))[0],
        "cases": macro_auroc(y_va, fit_score(s_tr, y_tr, s_va, args.C, own))[0],
        "cases_dense": macro_auroc(y_va, fit_score(s_tr, y_tr, s_va, args.C))[0],
        "wall_s": round(time.time() - t0)}
    path = args.out / "protoecgnet_encoder_probe.json"
    runs = [r for r in (json.loads(path.read_text()) if path.is_file() else [])
            if (r["k"], r["C"], r["seed"]) != (args.k, args.C, args.seed)] + [result]
    write_json_atomic(path, runs)
    write_text_atomic(args.out / "protoecgnet_encoder_probe.md", "\n".join([
        "# Case-based prototypes on the baseline's encoder (fold 9)", "",
        "`python bench/protoecgnet_encoder_probe.py` (module docstring): the shipped baseline's features averaged "
        "over each 10-s record; heads fitted on folds 1-8, macro AUROC on fold 9. `cases`: k real training records "
        "per statement as prototypes (k-means centres of its positives, each replaced by its nearest positive "
        "record), each statement scored from its own prototypes' cosine similarities only. Fold 10 is not read.", "",
        "| k | C | prototypes | baseline as shipped (windows) | linear on the record vector | cases (own prototypes) "
        "| cases, all prototypes | wall s |", "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {r['k']} | {r['C']:g} | {r['prototypes']} | {r['baseline_shipped']:.3f} | {r['linear']:.3f} | "
          f"{r['cases']:.3f} | {r['cases_dense']:.3f} | {r['wall_s']} |" for r in runs]]) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
