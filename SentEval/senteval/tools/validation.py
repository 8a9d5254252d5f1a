"""Model selection wrappers: pick the L2 regularisation, then report dev and test accuracy.
(docs/FAITHFULNESS.md, "SentEval")

``InnerKFold`` (MR/CR/SUBJ/MPQA: no test set), ``KFold`` (TREC/MRPC: CV on train, then test) and
``Split`` (SST2: fixed dev). Accuracies are returned in percent, rounded to 2 decimals as upstream.
Every classifier is built from the same seed, so the order of the fits does not change any number; the
folds are scikit-learn's ``StratifiedKFold(k, shuffle=True, random_state=seed)`` (SentEval/README.md).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold

from senteval.tools.classifier import SklearnLogReg, TorchClassifier

TORCH_REGS = (1e-5, 1e-4, 1e-3, 1e-2)  # weight decay of the torch classifier
SKLEARN_CS = tuple(2.0**t for t in range(-2, 4))  # C of the sklearn fallback (inner k-fold, split)
SKLEARN_CS_KFOLD = tuple(2.0**t for t in range(-1, 6))  # SentEval's k-fold wrapper scans a shifted C grid
INNER_KFOLD_SEED = 1111  # the inner k-fold wrapper's folds ignore the configured seed upstream


def _grid(config: dict, kfold_wrapper: bool = False) -> tuple[float, ...]:
    if config.get("usepytorch", True):
        return TORCH_REGS
    return SKLEARN_CS_KFOLD if kfold_wrapper else SKLEARN_CS


def _pct(fraction: float) -> float:
    """Percent rounded to 2 decimals: SentEval compares and averages these rounded values."""
    return round(100 * float(fraction), 2)


def make_classifier(inputdim: int, config: dict, reg: float):
    cls = TorchClassifier if config.get("usepytorch", True) else SklearnLogReg
    return cls(inputdim, config["nclasses"], reg, config.get("classifier", {}), seed=config.get("seed", 1111),
               device=config.get("device"))


def _folds(y: np.ndarray, k: int, seed: int):
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)


def cv_choose_reg(x: np.ndarray, y: np.ndarray, config: dict, kfold_wrapper: bool = False,
                  fold_seed: int | None = None) -> tuple[float, float]:
    """k-fold CV over the reg grid (each fold early-stops on its own held-out part, as upstream).

    Mean fold accuracies are rounded to 2 decimals (percent) before the argmax, so near-ties go to
    the first (weakest) reg exactly as in SentEval. Returns (best reg, its CV accuracy in percent).
    """
    folds = list(_folds(y, config["kfold"], config.get("seed", 1111) if fold_seed is None else fold_seed))
    grid = _grid(config, kfold_wrapper)
    scores = []
    for reg in grid:
        accs = []
        for tr, te in folds:
            clf = make_classifier(x.shape[1], config, reg)
            clf.fit(x[tr], y[tr], validation_data=(x[te], y[te]))
            accs.append(clf.score(x[te], y[te]))
        scores.append(_pct(np.mean(accs)))
    best = int(np.argmax(scores))
    return grid[best], scores[best]


def inner_kfold(x: np.ndarray, y: np.ndarray, config: dict) -> dict:
    """Outer stratified k-fold; inner k-fold on each outer-train part picks reg; retrain with 5 % val.

    Upstream draws this wrapper's outer and inner folds with random_state 1111 whatever the seed.
    """
    dev, test = [], []
    for tr, te in _folds(y, config["kfold"], INNER_KFOLD_SEED):
        reg, dev_acc = cv_choose_reg(x[tr], y[tr], config, fold_seed=INNER_KFOLD_SEED)
        clf = make_classifier(x.shape[1], config, reg)
        clf.fit(x[tr], y[tr], validation_split=0.05)
        dev.append(dev_acc)
        test.append(_pct(clf.score(x[te], y[te])))
    return {"devacc": round(float(np.mean(dev)), 2), "acc": round(float(np.mean(test)), 2)}


def kfold_then_test(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, config: dict) -> dict:
    """CV on train picks reg (devacc), retrain on all train (5 % val), score test; also returns yhat."""
    reg, dev_acc = cv_choose_reg(x, y, config, kfold_wrapper=True)
    clf = make_classifier(x.shape[1], config, reg)
    clf.fit(x, y, validation_split=0.05)
    yhat = clf.predict(xt)
    return {"devacc": dev_acc, "acc": _pct((yhat == yt).mean()), "yhat": yhat}


def split_classifier(data: dict[str, tuple[np.ndarray, np.ndarray]], config: dict) -> dict:
    """Fixed train/dev/test: reg chosen on dev (dev also early-stops), test scored once.

    As upstream, the dev accuracies are rounded to 2 decimals (percent) before the argmax, so a tie goes
    to the first (weakest) reg. Upstream then retrains that reg from the same seeds, which reproduces the
    chosen run exactly; we keep the chosen run instead of training it twice.
    """
    (x, y), (xd, yd), (xt, yt) = data["train"], data["dev"], data["test"]
    best_clf, best_acc = None, -1.0
    for reg in _grid(config):
        clf = make_classifier(x.shape[1], config, reg)
        clf.fit(x, y, validation_data=(xd, yd))
        acc = _pct(clf.score(xd, yd))
        if acc > best_acc:
            best_clf, best_acc = clf, acc
    return {"devacc": best_acc, "acc": _pct(best_clf.score(xt, yt))}


def classifier_config(params, nclasses: int) -> dict:
    """The config dict the wrappers read, built from SE params."""
    return {
        "nclasses": nclasses,
        "seed": params.get("seed", 1111),
        "usepytorch": params.get("usepytorch", True),
        "classifier": params.get("classifier", {}),
        "kfold": params.get("kfold", 5),
        "device": params.get("device"),
    }
