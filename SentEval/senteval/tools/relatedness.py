"""Supervised relatedness regressor (upstream's SICK-R/STS-B protocol, early stopping on Spearman).

A linear layer + softmax predicts a distribution over the integer scores lo..hi; the prediction is the
expected score. Gold scores become the two-hot distribution that has the gold value as expectation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from senteval.utils import dotdict


def pair_features(ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
    """[|u-v|, u*v]: (n, H), (n, H) -> (n, 2H)."""
    return np.concatenate([np.abs(ea - eb), ea * eb], axis=1)


def score_distribution(y: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Two-hot target whose expectation over lo..hi is y: (n,) -> (n, hi-lo+1)."""
    n_cls = hi - lo + 1
    out = np.zeros((len(y), n_cls), dtype=np.float32)
    for i, v in enumerate(np.clip(y, lo, hi)):
        base = int(np.floor(v)) - lo
        frac = v - np.floor(v)
        if base + 1 < n_cls:
            out[i, base + 1] = frac
            out[i, base] = 1.0 - frac
        else:
            out[i, base] = 1.0
    return out


def run_relatedness(
    data: dict, lookup: Callable[[Sequence[Sequence[str]]], np.ndarray], params: dotdict, score_range: tuple[int, int]
) -> dict:
    """Train on 'train', early-stop on dev Spearman (tenacity 5), report test correlations and MSE."""
    lo, hi = score_range
    feats = {s: pair_features(lookup(sa), lookup(sb)) for s, (sa, sb, _) in data.items()}
    gold = {s: g for s, (_, _, g) in data.items()}
    torch.manual_seed(params.get("seed", 1111))
    device = torch.device(params.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    x = {s: torch.from_numpy(f).float().to(device) for s, f in feats.items()}
    target = torch.from_numpy(score_distribution(gold["train"], lo, hi)).to(device)
    values = torch.arange(lo, hi + 1, dtype=torch.float32, device=device)
    model = torch.nn.Sequential(torch.nn.Linear(x["train"].shape[1], hi - lo + 1), torch.nn.Softmax(dim=-1)).to(device)
    opt = torch.optim.Adam(model.parameters())
    gen = torch.Generator().manual_seed(params.get("seed", 1111))

    def predict(split: str) -> np.ndarray:
        with torch.no_grad():
            return (model(x[split]) @ values).cpu().numpy()

    best, best_state, bad, batch = -1.0, copy.deepcopy(model.state_dict()), 0, 64
    for _epoch in range(1000):
        perm = torch.randperm(len(target), generator=gen).to(device)
        model.train()
        for i in range(0, len(perm), batch):
            idx = perm[i : i + batch]
            loss = torch.nn.functional.mse_loss(model(x["train"][idx]), target[idx], reduction="sum")
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        dev_rho = float(spearmanr(predict("dev"), gold["dev"])[0])
        if dev_rho > best:
            best, best_state, bad = dev_rho, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad > 5:
                break
    model.load_state_dict(best_state)
    yhat = predict("test")
    return {
        "devspearman": best,
        "pearson": float(pearsonr(yhat, gold["test"])[0]),
        "spearman": float(spearmanr(yhat, gold["test"])[0]),
        "mse": float(np.mean((yhat - gold["test"]) ** 2)),
        "yhat": yhat,
        "ndev": len(gold["dev"]),
        "ntest": len(gold["test"]),
    }
