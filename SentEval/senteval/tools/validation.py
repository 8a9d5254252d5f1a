"""Model selection wrappers (SPEC 6.3): pick the L2 regularisation, then report dev and test accuracy.

``InnerKFold`` (MR/CR/SUBJ/MPQA: no test set), ``KFold`` (TREC/MRPC: CV on train, then test) and
``Split`` (SST2: fixed dev). Accuracies are returned in percent, rounded to 2 decimals as upstream.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold

from senteval.tools.classifier import SklearnLogReg, TorchClassifier

TORCH_REGS = (1e-5, 1e-4, 1e-3, 1e-2)
SKLEARN_CS = tuple(2.0**t for t in range(-2, 4))


def _grid(config: dict) -> tuple[float, ...]:
    return TORCH_REGS if config.get("usepytorch", True) else SKLEARN_CS


def make_classifier(inputdim: int, config: dict, reg: float):
    cls = TorchClassifier if config.get("usepytorch", True) else SklearnLogReg
    return cls(inputdim, config["nclasses"], reg, config.get("classifier", {}), seed=config.get("seed", 1111),
               device=config.get("device"))


def _folds(y: np.ndarray, k: int, seed: int):
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)


def cv_choose_reg(x: np.ndarray, y: np.ndarray, config: dict) -> tuple[float, float]:
    """k-fold CV over the reg grid (each fold early-stops on its own held-out part, as upstream).

    Returns (best reg, its mean CV accuracy as a fraction).
    """
    folds = list(_folds(y, config["kfold"], config.get("seed", 1111)))
    scores = []
    for reg in _grid(config):
        accs = []
        for tr, te in folds:
            clf = make_classifier(x.shape[1], config, reg)
            clf.fit(x[tr], y[tr], validation_data=(x[te], y[te]))
            accs.append(clf.score(x[te], y[te]))
        scores.append(float(np.mean(accs)))
    best = int(np.argmax(scores))
    return _grid(config)[best], scores[best]


def inner_kfold(x: np.ndarray, y: np.ndarray, config: dict) -> dict:
    """Outer stratified k-fold; inner k-fold on each outer-train part picks reg; retrain with 5 % val."""
    dev, test = [], []
    for tr, te in _folds(y, config["kfold"], config.get("seed", 1111)):
        reg, dev_acc = cv_choose_reg(x[tr], y[tr], config)
        clf = make_classifier(x.shape[1], config, reg)
        clf.fit(x[tr], y[tr], validation_split=0.05)
        dev.append(dev_acc)
        test.append(clf.score(x[te], y[te]))
    return {"devacc": round(100 * float(np.mean(dev)), 2), "acc": round(100 * float(np.mean(test)), 2)}


def kfold_then_test(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, config: dict) -> dict:
    """CV on train picks reg (devacc), retrain on all train (5 % val), score test; also returns yhat."""
    reg, dev_acc = cv_choose_reg(x, y, config)
    clf = make_classifier(x.shape[1], config, reg)
    clf.fit(x, y, validation_split=0.05)
    yhat = clf.predict(xt)
    return {"devacc": round(100 * dev_acc, 2), "acc": round(100 * float((yhat == yt).mean()), 2), "yhat": yhat}


def split_classifier(data: dict[str, tuple[np.ndarray, np.ndarray]], config: dict) -> dict:
    """Fixed train/dev/test: reg chosen on dev (dev also early-stops), test scored once."""
    (x, y), (xd, yd), (xt, yt) = data["train"], data["dev"], data["test"]
    best_clf, best_acc = None, -1.0
    for reg in _grid(config):  # seeds are fixed, so the best run *is* the retrained model
        clf = make_classifier(x.shape[1], config, reg)
        clf.fit(x, y, validation_data=(xd, yd))
        acc = clf.score(xd, yd)
        if acc > best_acc:
            best_clf, best_acc = clf, acc
    return {"devacc": round(100 * best_acc, 2), "acc": round(100 * best_clf.score(xt, yt), 2)}


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
