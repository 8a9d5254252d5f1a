"""Logistic-regression / one-hidden-layer classifier trained with early stopping (SentEval's MLP).

Device-agnostic (upstream hard-wired CUDA). Randomness follows SentEval's protocol exactly (see
SentEval/README.md, "Transfer tasks: the randomness protocol"), so on the same features, device and
library versions the accuracies equal upstream's to the last printed digit: per classifier one NumPy
stream seeded with ``seed`` draws the 5 % hold-out and then one permutation per pass over the training
rows; the torch RNG is reseeded right before the ``nn.Linear`` is created. ``optim="lbfgs"`` instead
trains the linear classifier to convergence (full-batch L-BFGS, float64), an L2 logistic regression whose
numbers do not depend on seeds or early stopping. ``SklearnLogReg`` is the ``usepytorch=False`` fallback.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

logger = logging.getLogger(__name__)

DEFAULT_LR = {"adam": 1e-3, "rmsprop": 1e-2, "sgd": 0.1, "adagrad": 1e-2, "adadelta": 1.0}
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
}
# Full-batch L-BFGS run to convergence; max_iter is one step()'s iteration cap (int), the tolerances
# are torch's stopping tests (max |gradient|, change in loss / parameters).
LBFGS_DEFAULTS: dict[str, float] = {"max_iter": 1000, "tolerance_grad": 1e-6, "tolerance_change": 1e-9,
                                    "history_size": 100}


def parse_optim(spec: str) -> tuple[type[torch.optim.Optimizer], dict[str, float]]:
    """'adam', 'sgd,lr=0.1,momentum=0.9' or 'lbfgs,max_iter=500' -> (optimizer class, kwargs).

    Mini-batch optimizers get a default lr; 'lbfgs' gets ``LBFGS_DEFAULTS`` and only accepts those keys,
    since a typo there would silently leave the convergence settings at their defaults.
    """
    name, *rest = [p.strip() for p in spec.split(",")]
    if name == "lbfgs":
        kwargs: dict[str, float] = dict(LBFGS_DEFAULTS)
    elif name in OPTIMIZERS:
        kwargs = {"lr": DEFAULT_LR[name]}
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join([*OPTIMIZERS, 'lbfgs'])}")
    for item in rest:
        key, _, val = item.partition("=")
        key = key.strip()
        if name == "lbfgs" and key not in LBFGS_DEFAULTS:
            raise ValueError(f"unknown lbfgs option {key!r}; choose from {', '.join(LBFGS_DEFAULTS)}")
        kwargs[key] = float(val)
    if name == "lbfgs":
        kwargs["max_iter"], kwargs["history_size"] = int(kwargs["max_iter"]), int(kwargs["history_size"])
        return torch.optim.LBFGS, kwargs
    return OPTIMIZERS[name], kwargs


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TorchClassifier:
    """Linear (nhid=0) or one-hidden-layer classifier; weight decay = L2 reg; early stop on val accuracy.

    With ``config["optim"] = "lbfgs"`` (linear only) ``fit`` minimises mean cross-entropy +
    ``l2reg / 2 * ||W||^2`` (bias unpenalised) to convergence instead: scikit-learn's
    ``LogisticRegression(C=1 / (n_train * l2reg))``.
    """

    def __init__(self, inputdim: int, nclasses: int, l2reg: float, config: dict, seed: int = 1111,
                 device: str | torch.device | None = None) -> None:
        self.inputdim, self.nclasses, self.l2reg, self.seed = inputdim, nclasses, l2reg, seed
        self.device = torch.device(device) if device is not None else default_device()
        self.nhid = int(config.get("nhid", 0))
        self.batch_size = int(config.get("batch_size", 64))
        self.tenacity = int(config.get("tenacity", 5))
        self.epoch_size = int(config.get("epoch_size", 4))
        self.max_epoch = int(config.get("max_epoch", 200))
        self.dropout = float(config.get("dropout", 0.0))
        self.optim_spec = str(config.get("optim", "adam"))
        # parsed once, here, so a bad spec fails before any training
        self.optim_cls, self.optim_kwargs = parse_optim(self.optim_spec)
        self.lbfgs = self.optim_cls is torch.optim.LBFGS
        if self.lbfgs and self.nhid != 0:
            raise ValueError(f"optim {self.optim_spec!r} trains a linear classifier only: nhid must be 0, "
                             f"got {self.nhid}")
        # float64 for the converged fit: the optimum (and hence every prediction) is then reproducible
        self.dtype = torch.float64 if self.lbfgs else torch.float32

    def _build(self) -> None:
        if self.lbfgs:
            # convex problem: zero init makes the result independent of the seed (and leaves the RNG alone)
            self.model = torch.nn.utils.skip_init(torch.nn.Linear, self.inputdim, self.nclasses,
                                                  device=self.device, dtype=self.dtype)
            with torch.no_grad():
                self.model.weight.zero_()
                self.model.bias.zero_()
            self.optimizer = torch.optim.LBFGS(self.model.parameters(), line_search_fn="strong_wolfe",
                                               **self.optim_kwargs)
            return
        torch.manual_seed(self.seed)
        if self.nhid == 0:
            self.model = torch.nn.Linear(self.inputdim, self.nclasses)
        else:
            self.model = torch.nn.Sequential(
                torch.nn.Linear(self.inputdim, self.nhid),
                torch.nn.Dropout(self.dropout),
                torch.nn.Sigmoid(),
                torch.nn.Linear(self.nhid, self.nclasses),
            )
        self.model.to(self.device)
        self.optimizer = self.optim_cls(self.model.parameters(), weight_decay=self.l2reg, **self.optim_kwargs)

    def _tensors(self, x: np.ndarray, y: np.ndarray | None = None):
        np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        tx = torch.as_tensor(np.asarray(x, dtype=np_dtype), device=self.device)
        return tx if y is None else (tx, torch.as_tensor(np.asarray(y, dtype=np.int64), device=self.device))

    def fit(self, x: np.ndarray, y: np.ndarray, validation_data: tuple[np.ndarray, np.ndarray] | None = None,
            validation_split: float = 0.0) -> float:
        """Train; evaluate on the validation set after every ``epoch_size`` passes; keep the best model.

        Stops after ``tenacity + 1`` non-improving checks in total, or once more than ``max_epoch``
        passes are done (SentEval's bounds).

        Without ``validation_data`` a seeded random ``validation_split`` fraction of (x, y) is held out
        (no early stopping data at all if the split is 0: then the training set itself is scored).
        Returns the best validation accuracy (fraction).

        With lbfgs there is no early stopping, so nothing is held out: a given ``validation_data`` is only
        scored, and with ``validation_split`` the model is trained on all of (x, y) and its training
        accuracy is returned (the wrappers use that return value only for early-stopped classifiers).
        """
        if self.lbfgs:
            self._build()
            self._fit_lbfgs(x, y)
            return self.score(*validation_data) if validation_data is not None else self.score(x, y)
        # SentEval seeds NumPy's global RNG when it builds a classifier and draws everything from it: the
        # hold-out permutation first, then one permutation per pass. A private stream seeded the same way
        # gives the same draws without touching the caller's global state (one fit per classifier, as in
        # the wrappers; a second fit starts from the seed again).
        rng = np.random.RandomState(self.seed)
        if validation_data is None:
            perm = rng.permutation(len(x))
            n_val = int(validation_split * len(x))  # floor, as SentEval
            val_idx, tr_idx = perm[:n_val], perm[n_val:]
            validation_data = (x[val_idx], y[val_idx]) if n_val else (x, y)
            x, y = x[tr_idx], y[tr_idx]
        self._build()
        tx, ty = self._tensors(x, y)
        loss_fn = torch.nn.CrossEntropyLoss()  # mean over the batch (upstream's size_average flag is inert)
        best_acc, best_state, bad, passes = -1.0, None, 0, 0
        while passes <= self.max_epoch:
            self.model.train()
            for _ in range(self.epoch_size):
                order = torch.from_numpy(rng.permutation(len(tx))).to(self.device)
                for i in range(0, len(order), self.batch_size):
                    idx = order[i : i + self.batch_size]
                    loss = loss_fn(self.model(tx[idx]), ty[idx])
                    self.optimizer.zero_grad()
                    loss.backward()
                    self.optimizer.step()
                passes += 1
            acc = self.score(*validation_data)
            if acc > best_acc:
                best_acc, best_state = acc, copy.deepcopy(self.model.state_dict())
            else:
                # SentEval's patience is a budget for the whole run, not a streak: the count of
                # non-improving checks is never reset, and training stops at the first one after
                # ``tenacity`` of them. Kept so fast/test-mode numbers match the published protocol.
                if bad >= self.tenacity:
                    break
                bad += 1
        self.model.load_state_dict(best_state)
        return best_acc

    def _fit_lbfgs(self, x: np.ndarray, y: np.ndarray) -> None:
        """One full-batch L-BFGS run (strong-Wolfe line search) on the L2-penalised mean cross-entropy."""
        tx, ty = self._tensors(x, y)
        weight = self.model.weight

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(self.model(tx), ty) + 0.5 * self.l2reg * weight.pow(2).sum()
            loss.backward()
            return loss

        self.model.train()
        self.optimizer.step(closure)
        # diagnostics: iterations used; hitting the cap means the tolerances were not reached
        self.n_iter = int(self.optimizer.state[weight].get("n_iter", 0))
        if self.n_iter >= self.optimizer.defaults["max_iter"]:
            logger.warning("lbfgs stopped at max_iter=%d before converging (l2reg=%g); raise it with "
                           "optim='lbfgs,max_iter=N'", self.n_iter, self.l2reg)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class ids, computed in chunks of ``batch_size`` rows as SentEval scores (a float32 matmul's
        rounding can depend on the number of rows, and one flipped prediction moves an accuracy)."""
        self.model.eval()
        if not len(x):
            return np.zeros(0, dtype=np.int64)
        with torch.no_grad():
            logits = torch.cat([self.model(b) for b in self._tensors(x).split(self.batch_size)])  # (n, C)
        return logits.argmax(dim=1).cpu().numpy()

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy as a fraction (correct / n)."""
        return float((self.predict(x) == np.asarray(y)).mean())


class SklearnLogReg:
    """scikit-learn fallback (``usepytorch=False``); ``l2reg`` is used as the inverse strength C.

    scikit-learn's defaults (lbfgs, ``max_iter=100``) as in SentEval; ``config["sklearn_max_iter"]``
    raises the cap (not upstream's numbers then).
    """

    def __init__(self, inputdim: int, nclasses: int, l2reg: float, config: dict, seed: int = 1111,
                 device: str | torch.device | None = None) -> None:
        self.clf = LogisticRegression(C=l2reg, random_state=seed, max_iter=int(config.get("sklearn_max_iter", 100)))

    def fit(self, x: np.ndarray, y: np.ndarray, validation_data=None, validation_split: float = 0.0) -> float:
        self.clf.fit(x, y)
        return self.score(*validation_data) if validation_data is not None else self.score(x, y)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.clf.predict(x)

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())
