"""Logistic-regression / one-hidden-layer classifier trained with early stopping (SentEval's MLP).

Device-agnostic (upstream hard-wired CUDA). Seeds are reset per classifier so results are
deterministic for a given device. ``SklearnLogReg`` is the ``usepytorch=False`` fallback.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

DEFAULT_LR = {"adam": 1e-3, "rmsprop": 1e-2, "sgd": 0.1, "adagrad": 1e-2, "adadelta": 1.0}
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
}


def parse_optim(spec: str) -> tuple[type[torch.optim.Optimizer], dict[str, float]]:
    """'adam' or 'sgd,lr=0.1,momentum=0.9' -> (optimizer class, kwargs with lr)."""
    name, *rest = [p.strip() for p in spec.split(",")]
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    kwargs = {"lr": DEFAULT_LR[name]}
    for item in rest:
        key, _, val = item.partition("=")
        kwargs[key.strip()] = float(val)
    return OPTIMIZERS[name], kwargs


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TorchClassifier:
    """Linear (nhid=0) or one-hidden-layer classifier; weight decay = L2 reg; early stop on val accuracy."""

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

    def _build(self) -> None:
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
        cls, kwargs = parse_optim(self.optim_spec)
        self.optimizer = cls(self.model.parameters(), weight_decay=self.l2reg, **kwargs)

    def _tensors(self, x: np.ndarray, y: np.ndarray | None = None):
        tx = torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)
        return tx if y is None else (tx, torch.as_tensor(np.asarray(y, dtype=np.int64), device=self.device))

    def fit(self, x: np.ndarray, y: np.ndarray, validation_data: tuple[np.ndarray, np.ndarray] | None = None,
            validation_split: float = 0.0) -> float:
        """Train; evaluate on the validation set after every ``epoch_size`` passes; keep the best model.

        Without ``validation_data`` a seeded random ``validation_split`` fraction of (x, y) is held out
        (no early stopping data at all if the split is 0: then the training set itself is scored).
        Returns the best validation accuracy (fraction).
        """
        if validation_data is None:
            perm = np.random.RandomState(self.seed).permutation(len(x))
            n_val = int(round(validation_split * len(x)))
            val_idx, tr_idx = perm[:n_val], perm[n_val:]
            validation_data = (x[val_idx], y[val_idx]) if n_val else (x, y)
            x, y = x[tr_idx], y[tr_idx]
        self._build()
        tx, ty = self._tensors(x, y)
        gen = torch.Generator().manual_seed(self.seed)
        loss_fn = torch.nn.CrossEntropyLoss()
        best_acc, best_state, bad, passes = -1.0, None, 0, 0
        while passes < self.max_epoch:
            self.model.train()
            for _ in range(self.epoch_size):
                perm_t = torch.randperm(len(tx), generator=gen).to(self.device)
                for i in range(0, len(perm_t), self.batch_size):
                    idx = perm_t[i : i + self.batch_size]
                    loss = loss_fn(self.model(tx[idx]), ty[idx])
                    self.optimizer.zero_grad()
                    loss.backward()
                    self.optimizer.step()
                passes += 1
            acc = self.score(*validation_data)
            if acc > best_acc:
                best_acc, best_state, bad = acc, copy.deepcopy(self.model.state_dict()), 0
            else:
                bad += 1
                if bad > self.tenacity:
                    break
        self.model.load_state_dict(best_state)
        return best_acc

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            logits = torch.cat([self.model(b) for b in self._tensors(x).split(4096)]) if len(x) else None
        return np.zeros(0, dtype=np.int64) if logits is None else logits.argmax(dim=1).cpu().numpy()

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy as a fraction."""
        return float((self.predict(x) == np.asarray(y)).mean())


class SklearnLogReg:
    """scikit-learn fallback (``usepytorch=False``); ``l2reg`` is used as the inverse strength C."""

    def __init__(self, inputdim: int, nclasses: int, l2reg: float, config: dict, seed: int = 1111,
                 device: str | torch.device | None = None) -> None:
        self.clf = LogisticRegression(C=l2reg, random_state=seed, max_iter=1000)

    def fit(self, x: np.ndarray, y: np.ndarray, validation_data=None, validation_split: float = 0.0) -> float:
        self.clf.fit(x, y)
        return self.score(*validation_data) if validation_data is not None else self.score(x, y)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.clf.predict(x)

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())
