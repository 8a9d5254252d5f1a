"""The paper's studies, declared as data: each cell is a few ``train.py`` flags and the paper's number.

Paper numbers are STS-B development Spearman x 100 of BERT-base (Gao, Yao and Chen 2021, SimCSE), from the
table named in each study's ``source``; test averages are the 7 STS tasks of paper Table 5.
"""

from __future__ import annotations

import math

from studies.spec import Cell, Study

_READING_CPU = (
    "At CPU scale the starting model (all-MiniLM-L6-v2) is already trained for sentence similarity and a run is "
    "a few steps long, so compare trends (which setting is best, what collapses), not absolute numbers."
)


def _dropout() -> Study:
    rates = {"0.0": 71.1, "0.01": 72.6, "0.05": 81.1, "0.1": 82.5, "0.15": 81.4, "0.2": 80.5, "0.5": 71.0}
    cells = [Cell(f"p{p}", f"p = {p}", "unsup", ("--dropout", p), {"stsb_dev": v}) for p, v in rates.items()]
    cells.append(
        Cell("fixed0.1", "fixed 0.1 (same mask for both views)", "unsup", ("--dropout", "0.1", "--same_dropout_mask"),
             {"stsb_dev": 43.6})
    )
    return Study("dropout", "Dropout rate of unsupervised SimCSE", "paper Table 3", tuple(cells),
                 reading=_READING_CPU + " Paper: 0.1 best, p = 0 and 0.5 much worse, fixed 0.1 collapses.")


def _augmentation() -> Study:
    cells = [Cell("none", "none (dropout only, unsup SimCSE)", "unsup", (), {"stsb_dev": 82.5})]
    for k, v in {"10": 77.8, "20": 71.4, "30": 63.6}.items():
        cells.append(Cell(f"crop{k}", f"crop {k}%", "unsup", ("--augmentation", f"crop:0.{k[0]}"), {"stsb_dev": v}))
    for k, v in {"10": 75.9, "20": 72.2, "30": 68.2}.items():
        cells.append(Cell(f"worddel{k}", f"word deletion {k}%", "unsup", ("--augmentation", f"word_deletion:0.{k[0]}"),
                          {"stsb_dev": v}))
    cells += [
        Cell("del1", "delete one word", "unsup", ("--augmentation", "delete_one_word"), {"stsb_dev": 75.9}),
        Cell("del1_nodrop", "delete one word, w/o dropout", "unsup",
             ("--augmentation", "delete_one_word", "--dropout", "0.0"), {"stsb_dev": 74.2}),
        Cell("synonym", "synonym replacement", "unsup", (), {"stsb_dev": 77.4}, available=False,
             note="needs nlpaug + WordNet, not available offline"),
        Cell("mlm15", "MLM 15%", "unsup", (), {"stsb_dev": 62.2}, available=False,
             note="needs a BERT fill-in-the-mask pass over the corpus; not implemented"),
    ]
    return Study("augmentation", "Discrete augmentations of the second view vs dropout noise", "paper Table 1",
                 tuple(cells), reading=_READING_CPU + " Paper: dropout only is best; more cropping/deletion is worse.")


def _pooler() -> Study:
    rows = {  # name: (label, flags, unsup paper, sup paper)
        "cls_mlp": ("[CLS] w/ MLP", ("--pooler_type", "cls", "--mlp_only_train", "false"), 81.7, 86.2),
        "cls_mlp_train": ("[CLS] w/ MLP (train)", ("--pooler_type", "cls", "--mlp_only_train", "true"), 82.5, 85.8),
        "cls_no_mlp": ("[CLS] w/o MLP", ("--pooler_type", "cls_before_pooler", "--mlp_only_train", "false"),
                       80.9, 86.2),
        "first_last_avg": ("first-last avg.", ("--pooler_type", "avg_first_last", "--mlp_only_train", "false"),
                           81.2, 86.1),
    }
    cells = []
    for recipe in ("unsup", "sup"):
        for name, (label, flags, unsup, sup) in rows.items():
            cells.append(Cell(f"{recipe}_{name}", f"{label} ({recipe})", recipe, flags,
                              {"stsb_dev": unsup if recipe == "unsup" else sup}))
    return Study("pooler", "Pooling methods, unsupervised and supervised", "paper Table 6", tuple(cells),
                 reading=_READING_CPU + " MiniLM was trained with mean pooling, so [CLS] poolers start behind "
                 "first-last avg at this scale. Paper: differences within ~1.5 points.")


def _hard_negative_weight() -> Study:
    cells = [Cell("no_hard_neg", "no hard negative (pairs only)", "sup_pairs", (), {"stsb_dev": 84.9})]
    for alpha, v in {"0.5": 86.1, "1": 86.2, "2": 86.2}.items():
        log_alpha = f"{math.log(float(alpha)):.6f}"  # the flag is log(alpha)
        cells.append(Cell(f"alpha{alpha}", f"alpha = {alpha}", "sup", ("--hard_negative_weight", log_alpha),
                          {"stsb_dev": v}))
    cells.append(Cell("contra_neutral", "contradiction + neutral as hard negatives", "sup", (), {"stsb_dev": 85.3},
                      available=False, note="needs the neutral hypotheses, not in the NLI triplet file"))
    return Study("hard_negative_weight", "Weight of the anchor's own hard negative", "paper Table 7", tuple(cells),
                 reading=_READING_CPU + " Paper: hard negatives help (+1.3); alpha hardly matters.")


def _temperature() -> Study:
    cells = [Cell("dot", "dot product (no normalisation)", "sup", ("--similarity", "dot", "--temp", "1"),
                  {"stsb_dev": 85.9})]
    for tau, v in {"0.001": 84.9, "0.01": 85.4, "0.05": 86.2, "0.1": 82.0, "1": 64.0}.items():
        cells.append(Cell(f"tau{tau}", f"tau = {tau}", "sup", ("--temp", tau), {"stsb_dev": v}))
    return Study("temperature", "Temperature of the supervised contrastive loss", "paper Table D.1", tuple(cells),
                 reading=_READING_CPU + " Paper: 0.05 best, tau = 1 far worse.")


def _mlm() -> Study:
    cells = [Cell("no_mlm", "w/o MLM", "sup", (), {"stsb_dev": 86.2, "transfer_dev": 85.8})]
    for lam, (sts, tr) in {"0.01": (85.7, 86.1), "0.1": (85.7, 86.2), "1": (85.1, 85.8)}.items():
        cells.append(Cell(f"lambda{lam}", f"w/ MLM, lambda = {lam}", "sup", ("--do_mlm", "--mlm_weight", lam),
                          {"stsb_dev": sts, "transfer_dev": tr}))
    return Study("mlm", "Auxiliary MLM objective (supervised)", "paper Table D.2", tuple(cells),
                 metrics=("stsb_dev", "transfer_dev"), extra_flags=("--do_eval",),
                 reading=_READING_CPU + " Paper: MLM helps transfer a little and hurts STS-B.")


def _figure2() -> Study:
    cells = (
        Cell("unsup", "Unsup. SimCSE", "unsup", ()),
        Cell("fixed0.1", "Fixed 0.1", "unsup", ("--dropout", "0.1", "--same_dropout_mask")),
        Cell("no_dropout", "No dropout", "unsup", ("--dropout", "0.0")),
        Cell("delete_one_word", "Delete one word", "unsup", ("--augmentation", "delete_one_word")),
    )
    return Study("figure2", "Alignment and uniformity on STS-B dev during training", "paper Figure 2", cells,
                 metrics=("stsb_dev", "align_start", "uniform_start", "align", "uniform"),
                 reading="Paper: all settings improve uniformity; fixed 0.1 and no dropout lose alignment fast, "
                 "delete one word keeps alignment but gains less uniformity; unsup SimCSE keeps alignment steady "
                 "while uniformity improves.")


def _seeds() -> Study:
    cells = (
        Cell("unsup", "unsup SimCSE (default recipe)", "unsup", (), {"stsb_dev": 82.5, "sts_test_avg": 76.25}),
        Cell("sup", "sup SimCSE (default recipe)", "sup", (), {"stsb_dev": 86.2, "sts_test_avg": 81.57}),
    )
    return Study("seeds", "Seed variance of the default recipes", "paper Tables 3/6 (dev) and 5 (test Avg)", cells,
                 metrics=("stsb_dev", "sts_test_avg"), extra_flags=("--load_best_model_at_end",), test_eval=True,
                 default_seeds=3,
                 reading="The test Avg is evaluated on the best STS-B dev checkpoint (evaluation.py --task_set sts "
                 "--mode test).")


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (_dropout(), _augmentation(), _pooler(), _hard_negative_weight(), _temperature(), _mlm(), _figure2(),
              _seeds())
}
