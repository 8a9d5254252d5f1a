"""Transfer tasks on synthetic data: layouts, determinism, classifier vs scikit-learn, MRPC features/F1."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import senteval
from senteval.tools.classifier import TorchClassifier, parse_optim
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from tests.numerics import is_close_scaled
from tests.test_senteval_sts import batcher, embed_tokens

FAST = {"nhid": 0, "optim": "rmsprop", "batch_size": 32, "tenacity": 3, "epoch_size": 2, "max_epoch": 20}
POS = "good great fine nice superb".split()
NEG = "bad awful poor nasty dull".split()
FILLER = "the film was plot actor really quite very so".split()


def sentence(rng: np.random.RandomState, polar: list[str], noise: float = 0.0) -> str:
    """Filler words plus one polarity word (from the other class with probability ``noise``)."""
    words = list(rng.choice(FILLER, size=rng.randint(2, 6)))
    pool = polar if rng.rand() >= noise else (NEG if polar is POS else POS)
    words.insert(rng.randint(len(words) + 1), rng.choice(pool))
    return " ".join(words)


def make_transfer_data(root: Path, n: int = 60, noise: float = 0.1, seed: int = 0) -> Path:
    rng = np.random.RandomState(seed)
    for folder, pos_name, neg_name in (("MR", "rt-polarity.pos", "rt-polarity.neg"),
                                       ("CR", "custrev.pos", "custrev.neg")):
        (root / folder).mkdir(parents=True)
        (root / folder / pos_name).write_text("\n".join(sentence(rng, POS, noise) for _ in range(n)) + "\n",
                                              encoding="latin-1")
        (root / folder / neg_name).write_text("\n".join(sentence(rng, NEG, noise) for _ in range(n)) + "\n",
                                              encoding="latin-1")
    (root / "SST" / "binary").mkdir(parents=True)
    for split, m in (("train", 2 * n), ("dev", n // 2), ("test", n // 2)):
        lines = [f"{sentence(rng, POS if i % 2 else NEG, noise)}\t{i % 2}" for i in range(m)]
        (root / "SST" / "binary" / f"sentiment-{split}").write_text("\n".join(lines) + "\n")
    (root / "TREC").mkdir()
    coarse = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    cue = ["abbrev", "describe", "thing", "who", "where", "howmany"]
    for name, m in (("train_5500.label", 120), ("TREC_10.label", 30)):
        lines = [f"{coarse[i % 6]}:x {cue[i % 6]} {' '.join(rng.choice(FILLER, 3))} ?" for i in range(m)]
        (root / "TREC" / name).write_text("\n".join(lines) + "\n", encoding="latin-1")
    (root / "MRPC").mkdir()
    for name, m in (("msr_paraphrase_train.txt", 80), ("msr_paraphrase_test.txt", 30)):
        rows = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i in range(m):
            a = sentence(rng, POS)
            b = a if i % 2 else sentence(rng, NEG)
            rows.append(f"{i % 2}\t{i}\t{i + 1000}\t{a}\t{b}")
        (root / "MRPC" / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def transfer_dir(tmp_path_factory) -> Path:
    return make_transfer_data(tmp_path_factory.mktemp("transfer") / "downstream")


def params(path: Path, **kw) -> dict:
    return {"task_path": str(path), "progress": False, "kfold": 3, "classifier": FAST, "device": "cpu", **kw}


def test_layouts_and_determinism(transfer_dir: Path) -> None:
    tasks = ["MR", "CR", "SST2", "TREC", "MRPC"]
    first = senteval.SE(params(transfer_dir), batcher).eval(tasks)
    second = senteval.SE(params(transfer_dir), batcher).eval(tasks)
    assert first == second  # fixed seeds: identical numbers run to run
    for t in tasks:
        assert {"devacc", "acc", "ndev", "ntest"} <= set(first[t])
        assert 50 <= first[t]["acc"] <= 100 and first[t]["acc"] == round(first[t]["acc"], 2)
    assert first["MR"]["ntest"] == 120 and first["SST2"]["ntest"] == 30 and first["TREC"]["ntest"] == 30
    assert first["TREC"]["acc"] >= 50  # the cue word determines the class (chance: 16.7)
    assert "f1" in first["MRPC"]


def test_mrpc_f1_matches_sklearn_on_the_same_predictions(transfer_dir: Path, monkeypatch) -> None:
    import senteval.mrpc as mrpc

    seen = {}
    orig = mrpc.kfold_then_test

    def spy(x, y, xt, yt, config):
        res = orig(x, y, xt, yt, config)
        seen.update(x=x, yhat=res["yhat"].copy(), yt=yt)
        return res

    monkeypatch.setattr(mrpc, "kfold_then_test", spy)
    res = senteval.SE(params(transfer_dir), batcher).eval("MRPC")
    assert res["f1"] == round(100 * f1_score(seen["yt"], seen["yhat"]), 2)
    assert res["acc"] == round(100 * float((seen["yhat"] == seen["yt"]).mean()), 2)
    # features are [|u-v|, u*v] of the two sentences (2H columns)
    lines = (transfer_dir / "MRPC" / "msr_paraphrase_train.txt").read_text(encoding="utf-8-sig").splitlines()[1:]
    row = [r.split("\t") for r in lines]
    u, v = embed_tokens(row[0][3].split()), embed_tokens(row[0][4].split())
    feats = np.concatenate([np.abs(u - v), u * v]).astype(np.float32)
    assert any(is_close_scaled(f, feats, what="features") for f in seen["x"])  # float32 products


def test_sklearn_fallback_runs(transfer_dir: Path) -> None:
    res = senteval.SE(params(transfer_dir, usepytorch=False), batcher).eval("CR")
    assert res["acc"] >= 80


def test_torch_logreg_agrees_with_sklearn_on_separable_blobs() -> None:
    rng = np.random.RandomState(0)
    x = np.concatenate([rng.randn(300, 5) + 1.5, rng.randn(300, 5) - 1.5]).astype(np.float32)
    y = np.array([1] * 300 + [0] * 300)
    perm = rng.permutation(600)
    x, y = x[perm], y[perm]
    config = {"optim": "adam", "batch_size": 64, "tenacity": 5, "epoch_size": 4}
    clf = TorchClassifier(5, 2, 1e-4, config, device="cpu")
    clf.fit(x[:400], y[:400], validation_data=(x[400:500], y[400:500]))
    ref = LogisticRegression().fit(x[:400], y[:400])
    agree = (clf.predict(x[500:]) == ref.predict(x[500:])).mean()
    assert agree >= 0.97 and clf.score(x[500:], y[500:]) >= 0.95


def test_parse_optim() -> None:
    import torch

    assert parse_optim("adam") == (torch.optim.Adam, {"lr": 1e-3})
    assert parse_optim("rmsprop") == (torch.optim.RMSprop, {"lr": 1e-2})
    assert parse_optim("sgd,lr=0.5,momentum=0.9") == (torch.optim.SGD, {"lr": 0.5, "momentum": 0.9})
    lbfgs_cls, lbfgs_kwargs = parse_optim("lbfgs,max_iter=500")
    assert lbfgs_cls is torch.optim.LBFGS and lbfgs_kwargs["max_iter"] == 500
    assert isinstance(lbfgs_kwargs["max_iter"], int) and lbfgs_kwargs["tolerance_grad"] == 1e-6
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgz'"):
        parse_optim("lbfgz")
    with pytest.raises(ValueError, match="unknown optimizer"):
        TorchClassifier(4, 2, 1e-3, {"optim": "nadam"}, device="cpu")
    with pytest.raises(ValueError, match="unknown lbfgs option"):
        parse_optim("lbfgs,lr=0.1")


def blobs3(seed: int = 0, n: int = 300, d: int = 10, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping Gaussian classes: n training points then 200 held-out ones."""
    rng = np.random.RandomState(seed)
    y = rng.randint(k, size=n + 200)
    return (rng.randn(k, d)[y] + rng.randn(n + 200, d)).astype(np.float32), y


def test_lbfgs_is_sklearn_l2_logreg() -> None:
    import torch

    x, y = blobs3()
    n, reg = 300, 1e-2
    clf = TorchClassifier(10, 3, reg, {"optim": "lbfgs"}, device="cpu")
    val_acc = clf.fit(x[:n], y[:n], validation_data=(x[n:], y[n:]))
    assert val_acc == clf.score(x[n:], y[n:]) and clf.n_iter < 1000  # converged, no early stopping
    # same objective: C * sum CE + ||W||^2 / 2 == n * C * (mean CE + reg / 2 * ||W||^2) with C = 1 / (n * reg);
    # float64 input so scikit-learn does not solve in float32
    ref = LogisticRegression(C=1 / (n * reg), tol=1e-10, max_iter=10000).fit(x[:n].astype(np.float64), y[:n])
    assert (clf.predict(x[n:]) == ref.predict(x[n:].astype(np.float64))).mean() >= 0.99
    w = clf.model.weight.detach().numpy()
    assert np.abs(w - ref.coef_).max() <= 1e-3 * np.abs(ref.coef_).max()  # L2 makes W unique (rows sum to 0)
    with torch.no_grad():
        proba = torch.softmax(clf.model(torch.as_tensor(x[n:], dtype=torch.float64)), dim=1).numpy()
    np.testing.assert_allclose(proba, ref.predict_proba(x[n:].astype(np.float64)), atol=1e-4)


def test_lbfgs_is_deterministic_and_ignores_the_seed() -> None:
    x, y = blobs3(seed=1)
    weights = []
    for seed in (1111, 1111, 7):
        clf = TorchClassifier(10, 3, 1e-3, {"optim": "lbfgs,max_iter=500"}, seed=seed, device="cpu")
        clf.fit(x[:300], y[:300], validation_data=(x[300:], y[300:]))
        weights.append(clf.model.weight.detach().numpy().copy())
    assert np.array_equal(weights[0], weights[1]) and np.array_equal(weights[0], weights[2])


def test_lbfgs_with_a_validation_split_trains_on_everything() -> None:
    """Without early stopping nothing needs holding out: validation_split=0.05 fits all rows (the same
    weights as a fit on all rows scored elsewhere) and returns the training accuracy."""
    x, y = blobs3(seed=2)
    split = TorchClassifier(10, 3, 1e-3, {"optim": "lbfgs"}, device="cpu")
    acc = split.fit(x[:300], y[:300], validation_split=0.05)
    full = TorchClassifier(10, 3, 1e-3, {"optim": "lbfgs"}, device="cpu")
    full.fit(x[:300], y[:300], validation_data=(x[300:], y[300:]))
    assert np.array_equal(split.model.weight.detach().numpy(), full.model.weight.detach().numpy())
    assert acc == split.score(x[:300], y[:300])


def test_lbfgs_requires_a_linear_classifier() -> None:
    with pytest.raises(ValueError, match="nhid must be 0"):
        TorchClassifier(10, 3, 1e-3, {"optim": "lbfgs", "nhid": 50}, device="cpu")


def test_classifier_optim_override_keeps_the_mode(tmp_path: Path) -> None:
    from simcse import evaluation as ev

    base = ev.senteval_params("fasttest", tmp_path)
    over = ev.senteval_params("fasttest", tmp_path, classifier_optim="lbfgs")
    assert base["classifier"]["optim"] == "rmsprop" and over["classifier"]["optim"] == "lbfgs"
    assert {**over["classifier"], "optim": "rmsprop"} == base["classifier"] and over["kfold"] == base["kfold"]
    assert ev.FAST_CLASSIFIER["optim"] == "rmsprop"  # the module default is not mutated


def test_trec_bad_label_error(tmp_path: Path) -> None:
    root = make_transfer_data(tmp_path / "d", n=10)
    path = root / "TREC" / "TREC_10.label"
    lines = path.read_text(encoding="latin-1").splitlines()
    lines[4] = "WHAT:x who is it ?"
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(senteval.DataError, match=r"TREC_10.label:5: expected COARSE:fine"):
        senteval.SE(params(root), batcher).eval("TREC")


def _fit_with_scripted_scores(monkeypatch, accs: list[float], **config) -> tuple[int, float]:
    """Fit a TorchClassifier whose validation accuracies are ``accs`` in turn; (number of checks, best)."""
    script = iter(accs)
    calls = {"n": 0}

    def scripted_score(self, x, y):
        calls["n"] += 1
        return next(script)

    monkeypatch.setattr(TorchClassifier, "score", scripted_score)
    rng = np.random.RandomState(0)
    x, y = rng.randn(40, 4).astype(np.float32), rng.randint(0, 2, 40)
    best = TorchClassifier(4, 2, 1e-4, {**FAST, **config}, device="cpu").fit(x, y, validation_data=(x, y))
    return calls["n"], best


def test_early_stopping_patience_is_a_budget_not_a_streak(monkeypatch) -> None:
    """SentEval counts non-improving checks over the whole run (the count is never reset on improvement)
    and stops at the first one after ``tenacity`` of them. Scripted validation accuracies:
    0.50 best, 0.60 best, 0.55 (1st miss), 0.70 best, 0.65 (2nd miss), 0.65 (3rd miss -> stop).
    A streak rule would have gone on to the 0.80 of the 7th check."""
    accs = [0.50, 0.60, 0.55, 0.70, 0.65, 0.65, 0.80, 0.90, 0.95]
    checks, best = _fit_with_scripted_scores(monkeypatch, accs, tenacity=2, epoch_size=1, max_epoch=50)
    assert checks == 6 and best == 0.70


def test_max_epoch_bounds_the_passes(monkeypatch) -> None:
    """Training continues while passes <= max_epoch (SentEval's bound): with epoch_size 2 and max_epoch 4,
    the checks come after 2, 4 and 6 passes, then the loop ends (no early stop with rising accuracy)."""
    checks, best = _fit_with_scripted_scores(monkeypatch, [0.1 * i for i in range(1, 20)], epoch_size=2, max_epoch=4)
    assert checks == 3 and best == pytest.approx(0.3)


@contextlib.contextmanager
def recorded_training_batches():
    """Row ids of every training mini-batch fed to an ``nn.Linear`` (column 0 of x holds the row id)."""
    import torch

    seen: list[list[int]] = []

    def hook(module, args):
        if module.training and isinstance(module, torch.nn.Linear):
            seen.append([int(v) for v in args[0][:, 0].tolist()])

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _id_rows(n: int, d: int = 3, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d).astype(np.float32)
    x[:, 0] = np.arange(n)  # exact in float32: identifies the row inside a batch
    return x, rng.randint(0, 3, n)


def test_shuffles_follow_the_documented_protocol_with_a_hold_out() -> None:
    """SentEval/README.md: one NumPy stream seeded with the seed; the first permutation of n rows puts
    its first floor(0.05 n) rows in the hold-out, then every pass draws a permutation of the n_train
    remaining rows and walks it in batches of batch_size. Expected ids computed here with the global
    NumPy RNG, as upstream draws them."""
    import torch

    n, bs = 50, 8
    x, y = _id_rows(n)
    config = {"optim": "sgd,lr=0", "batch_size": bs, "tenacity": 100, "epoch_size": 2, "max_epoch": 3}
    with recorded_training_batches() as seen:
        clf = TorchClassifier(3, 3, 1e-3, config, device="cpu")
        clf.fit(x, y, validation_split=0.05)
    np.random.seed(1111)
    perm = np.random.permutation(n)
    train_ids = perm[int(0.05 * n):]  # 2 held out, 48 trained on
    expected = []
    for _ in range(4):  # checks after 2 and 4 passes; the loop runs while passes <= max_epoch = 3
        order = np.random.permutation(len(train_ids))
        expected += [train_ids[order[i : i + bs]].tolist() for i in range(0, len(order), bs)]
    assert len(seen) == 4 * 6 and seen == expected
    # lr 0: the weights are still the initial ones, the first draws of torch's RNG after manual_seed(1111)
    torch.manual_seed(1111)
    ref = torch.nn.Linear(3, 3)
    assert torch.equal(clf.model.weight, ref.weight) and torch.equal(clf.model.bias, ref.bias)


def test_shuffles_without_a_hold_out_start_the_stream() -> None:
    """With validation data nothing is held out: the stream's first permutation is the first pass."""
    n, bs = 21, 5
    x, y = _id_rows(n, seed=6)
    config = {"optim": "sgd,lr=0", "batch_size": bs, "tenacity": 0, "epoch_size": 3, "max_epoch": 10}
    with recorded_training_batches() as seen:
        TorchClassifier(3, 3, 1e-3, config, seed=7, device="cpu").fit(x, y, validation_data=(x[:4], y[:4]))
    np.random.seed(7)
    expected = []
    for _ in range(6):  # lr 0: the 2nd check cannot improve and tenacity 0 stops there, after 6 passes
        order = np.random.permutation(n)
        expected += [order[i : i + bs].tolist() for i in range(0, n, bs)]
    assert [len(b) for b in seen[:5]] == [5, 5, 5, 5, 1] and seen == expected
