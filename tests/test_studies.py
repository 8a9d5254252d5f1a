"""The paper studies (studies/) and their library hooks: --dropout, --same_dropout_mask, --augmentation,
--similarity dot; run lists, resume, and the table writer."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

import train
from simcse import augment
from simcse.data import DataFormatError, load_training_dataset
from simcse.losses import contrastive_loss
from simcse.models import load_cl_model
from simcse.settings import RuntimeOptions
from studies import report, runner
from studies.catalog import STUDIES
from studies.spec import Cell, Study, get_scale
from tests.conftest import make_tokenizer

# --- run lists -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale_name", ["cpu", "paper"])
@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_run_list_builds_and_parses_as_train_py_flags(name, scale_name, tmp_path):
    study, scale = STUDIES[name], get_scale(scale_name)
    runs = runner.build_runs(study, scale, tmp_path, seeds=2)
    available = [c for c in study.cells if c.available]
    assert len(runs) == 2 * len(available)
    assert len({r.output_dir for r in runs}) == len(runs)  # no two runs share a folder
    for run in runs:
        cell = next(c for c in study.cells if c.name == run.cell)
        model_args, data_args, training_args = train.parse_args(list(run.argv))
        assert model_args.model_name_or_path == scale.model
        assert training_args.seed == run.seed and Path(training_args.output_dir) == run.output_dir
        assert training_args.metric_for_best_model == "stsb_spearman"
        assert list(run.argv[-len(cell.flags):]) == list(cell.flags) if cell.flags else True
        if scale_name == "paper":
            assert model_args.model_name_or_path == "bert-base-uncased"
        if cell.recipe == "unsup":
            assert data_args.train_file == scale.data["unsup"]
        if cell.recipe == "sup_pairs":
            assert data_args.train_file == str(runner.pairs_file(tmp_path))
    assert {r.seed for r in runs} == {runner.FIRST_SEED, runner.FIRST_SEED + 1}


def test_cells_set_the_paper_settings(tmp_path):
    """The flags reach the dataclasses as the paper's settings (log alpha, dropout, poolers, temperature)."""
    scale = get_scale("cpu")

    def parsed(study: str) -> dict[str, tuple]:
        return {r.cell: train.parse_args(list(r.argv)) for r in runner.build_runs(STUDIES[study], scale, tmp_path)}

    hn = parsed("hard_negative_weight")
    for alpha in ("0.5", "1", "2"):
        assert math.exp(hn[f"alpha{alpha}"][0].hard_negative_weight) == pytest.approx(float(alpha), rel=1e-5)
    drop = parsed("dropout")
    assert drop["p0.0"][0].dropout == 0.0 and drop["p0.5"][0].dropout == 0.5
    assert drop["fixed0.1"][0].same_dropout_mask and drop["fixed0.1"][0].dropout == 0.1
    assert not drop["p0.1"][0].same_dropout_mask
    pool = parsed("pooler")
    assert (pool["unsup_cls_mlp"][0].pooler_type, pool["unsup_cls_mlp"][0].mlp_only_train) == ("cls", False)
    assert (pool["unsup_cls_mlp_train"][0].pooler_type, pool["unsup_cls_mlp_train"][0].mlp_only_train) == ("cls", True)
    assert pool["sup_first_last_avg"][0].pooler_type == "avg_first_last"
    assert pool["sup_cls_mlp"][1].train_file.endswith(".csv")
    temp = parsed("temperature")
    assert (temp["dot"][0].similarity, temp["dot"][0].temp) == ("dot", 1.0) and temp["tau0.001"][0].temp == 0.001
    aug = parsed("augmentation")
    assert aug["crop20"][1].augmentation == "crop:0.2" and aug["del1_nodrop"][0].dropout == 0.0
    fig = parsed("figure2")
    assert all(args[2].eval_alignment_uniformity and args[2].eval_on_start for args in fig.values())
    seeds = parsed("seeds")
    assert len(seeds) == 2 and all(args[2].load_best_model_at_end for args in seeds.values())
    assert len(runner.build_runs(STUDIES["seeds"], scale, tmp_path)) == 6  # 3 seeds by default


# --- resume ----------------------------------------------------------------------------------------------


def _fake_trainer(calls: list[str]):
    def fake(argv):
        out = Path(argv[argv.index("--output_dir") + 1])
        calls.append(out.parent.name)
        out.mkdir(parents=True, exist_ok=True)
        seed = int(argv[argv.index("--seed") + 1])
        history = [{"step": s, "eval_stsb_spearman": 0.5 + 0.01 * s + 0.001 * seed} for s in (20, 40)]
        (out / "log_history.json").write_text(json.dumps(history))
    return fake


def test_a_stopped_study_resumes_without_redoing_finished_runs(tmp_path):
    study = Study("toy", "toy", "none", (Cell("a", "A", "unsup", ("--dropout", "0.1"), {"stsb_dev": 80.0}),
                                         Cell("b", "B", "unsup", ("--dropout", "0.2"), {"stsb_dev": 81.0})))
    scale = get_scale("cpu")
    calls: list[str] = []
    first = runner.run_study(study, scale, tmp_path, seeds=2, trainer=_fake_trainer(calls))
    assert calls == ["a", "a", "b", "b"] and len(first) == 4
    assert first[0]["stsb_dev"] == pytest.approx(100 * (0.5 + 0.4 + 0.042))  # the best evaluation
    # "Stop" the study: one run lost its result (as if killed before the end); a rerun redoes only that one.
    (runner.build_runs(study, scale, tmp_path, seeds=2)[3].output_dir / runner.RESULT_FILE).unlink()
    calls.clear()
    second = runner.run_study(study, scale, tmp_path, seeds=2, trainer=_fake_trainer(calls))
    assert calls == ["b"]
    assert [r["stsb_dev"] for r in second] == [r["stsb_dev"] for r in first]
    calls.clear()
    runner.run_study(study, scale, tmp_path, seeds=2, trainer=_fake_trainer(calls))
    assert calls == []


def test_real_tiny_run_is_done_once(tiny_bert_dir, senteval_data, tmp_path):
    """train.main itself on a tiny model: the result is read from its log, --dropout reaches the config, and a
    second pass of the study skips the run."""
    wiki = tmp_path / "wiki.txt"
    wiki.write_text("\n".join(f"sentence number {i} is about a dog ." for i in range(40)) + "\n", encoding="utf-8")
    scale = get_scale("cpu")
    scale = type(scale)(**{**scale.__dict__, "model": str(tiny_bert_dir), "data": {"unsup": str(wiki)},
                           "senteval_data_dir": str(senteval_data),
                           "recipes": {"unsup": (*scale.recipes["unsup"], "--max_steps", "2", "--eval_steps", "2",
                                                 "--use_cpu")}})
    study = Study("tiny", "tiny", "none", (Cell("p05", "p = 0.05", "unsup", ("--dropout", "0.05")),))
    calls = []

    def counting(argv):
        calls.append(1)
        return runner.train_main(argv)

    (result,) = runner.run_study(study, scale, tmp_path / "out", trainer=counting)
    assert -100 <= result["stsb_dev"] <= 100 and result["best_step"] == 2
    run_dir = runner.build_runs(study, scale, tmp_path / "out")[0].output_dir
    config = json.loads((run_dir / "config.json").read_text())
    assert config["hidden_dropout_prob"] == 0.05 and config["attention_probs_dropout_prob"] == 0.05
    assert not (run_dir / "model.safetensors").exists()  # weights dropped once the numbers are read
    (again,) = runner.run_study(study, scale, tmp_path / "out", trainer=counting)
    assert calls == [1] and again == result


# --- "fixed 0.1": the same dropout mask for both views ----------------------------------------------------


def _capture_views(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    import simcse.models

    seen = []
    real = simcse.models.contrastive_loss

    def spy(z1, z2, z3=None, **kw):
        seen.append((z1.detach().clone(), z2.detach().clone()))
        return real(z1, z2, z3, **kw)

    monkeypatch.setattr(simcse.models, "contrastive_loss", spy)
    return seen


@pytest.mark.parametrize("pooler_type", ["cls", "avg"])
def test_same_dropout_mask_gives_two_identical_views(tiny_bert_dir, monkeypatch, pooler_type):
    tok = make_tokenizer("bert")
    batch = tok(["the dog runs in the park", "a man plays", "children eat food ."], padding=True, return_tensors="pt")
    pairs = {k: torch.stack([v, v], 1) for k, v in batch.items()}  # (3, 2, L): unsupervised copies
    seen = _capture_views(monkeypatch)
    settings = {"pooler_type": pooler_type}
    load_cl_model(str(tiny_bert_dir), simcse_settings=settings).train()(**pairs)  # default: two masks (p 0.1)
    model = load_cl_model(
        str(tiny_bert_dir), simcse_settings=settings, runtime=RuntimeOptions(same_dropout_mask=True)
    ).train()
    assert model.same_dropout_mask
    out = model(**pairs)
    (z1_default, z2_default), (z1, z2) = seen
    assert not torch.equal(z1_default, z2_default)
    assert torch.equal(z1, z2)  # bitwise: one encoding is both views
    assert torch.allclose(out.logits.diagonal(), torch.full((3,), 1 / 0.05), rtol=1e-5)  # cos(z, z) / tau
    out.loss.backward()  # the shared view still trains the encoder
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_same_dropout_mask_refuses_pairs(tiny_bert_dir):
    tok = make_tokenizer("bert")
    fixed = {"padding": "max_length", "max_length": 16, "truncation": True, "return_tensors": "pt"}
    a = tok(["the dog runs", "a man plays"], **fixed)
    b = tok(["a dog is running", "someone plays"], **fixed)
    pairs = {k: torch.stack([a[k], b[k]], 1) for k in a}
    model = load_cl_model(
        str(tiny_bert_dir), simcse_settings={"pooler_type": "cls"}, runtime=RuntimeOptions(same_dropout_mask=True)
    ).train()
    with pytest.raises(ValueError, match="unsupervised"):
        model(**pairs)


# --- augmentations ---------------------------------------------------------------------------------------


class _Scripted(random.Random):
    """An RNG whose choices are given by hand."""

    def __init__(self, start: int = 0, sample: list[int] | None = None) -> None:
        super().__init__(0)
        self._start, self._sample = start, sample or []
        self.asked: list = []

    def randrange(self, n, *args):
        self.asked.append(("randrange", n))
        return self._start

    def sample(self, population, k, **kwargs):
        self.asked.append(("sample", len(population), k))
        return self._sample[:k]


TEN = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"


def test_crop_keeps_a_contiguous_span_of_the_rest():
    rng = _Scripted(start=2)
    assert augment.crop(TEN, 0.3, rng) == "w2 w3 w4 w5 w6 w7 w8"  # 7 of 10 words, from word 2
    assert rng.asked == [("randrange", 4)]  # starts 0..3 are the spans of 7 words inside 10
    assert augment.crop("only", 0.3, rng) == "only"
    assert augment.crop("a b c", 0.9, _Scripted(start=1)) == "b"  # at least one word


def test_word_deletion_removes_that_share_of_words():
    rng = _Scripted(sample=[1, 7, 4])
    assert augment.word_deletion(TEN, 0.2, rng) == "w0 w2 w3 w4 w5 w6 w8 w9"  # 2 of 10 words: w1 and w7
    assert rng.asked == [("sample", 10, 2)]
    assert augment.word_deletion(TEN, 0.3, _Scripted(sample=[1, 7, 4])) == "w0 w2 w3 w5 w6 w8 w9"


def test_delete_one_word():
    assert augment.delete_one_word("the cat sat on the mat", _Scripted(start=1)) == "the sat on the mat"
    assert augment.delete_one_word("hello", _Scripted(start=0)) == "hello"


def test_augment_sentences_is_seeded_and_counts_words():
    sents = [" ".join(f"w{i}" for i in range(n)) for n in (5, 10, 17)]
    a = augment.augment_sentences(sents, "word_deletion:0.3", seed=1)
    assert a == augment.augment_sentences(sents, "word_deletion:0.3", seed=1)
    assert [len(s.split()) for s in a] == [5 - 2, 10 - 3, 17 - 5]  # round(0.3 n) deleted
    c = augment.augment_sentences(sents, "crop:0.1", seed=3)
    assert all(x in s and len(x.split()) == round(0.9 * len(s.split())) for x, s in zip(c, sents))
    for bad in ("crop", "crop:1.5", "shuffle:0.1", "delete_one_word:0.1"):
        with pytest.raises(ValueError, match="--augmentation"):
            augment.parse_augmentation(bad)


def test_augmentation_makes_the_second_view_of_unsup_data(tmp_path):
    tok = make_tokenizer("bert")
    txt = tmp_path / "u.txt"
    txt.write_text("the dog runs in the park\na man is playing the guitar\n", encoding="utf-8")
    ds, _ = load_training_dataset(txt, tok, augmentation="delete_one_word", augmentation_seed=0)
    for row in ds:
        first, second = row["input_ids"]
        assert len(second) == len(first) - 1  # one (single-token) word fewer in the second view
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("sent0,sent1\na dog,a puppy\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="unsupervised data; this file has 2 columns"):
        load_training_dataset(csv_file, tok, augmentation="crop:0.1")


# --- dot-product similarity ------------------------------------------------------------------------------


def test_dot_similarity_against_a_hand_computation():
    z1 = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    z2 = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    loss, logits = contrastive_loss(z1, z2, temp=0.5, similarity="dot")
    # dot products: [[2, 3], [1, -0.5]] / 0.5 = [[4, 6], [2, -1]]
    assert logits.tolist() == [[4.0, 6.0], [2.0, -1.0]]
    hand = (-(4 - math.log(math.exp(4) + math.exp(6))) - (-1 - math.log(math.exp(2) + math.exp(-1)))) / 2
    assert loss.item() == pytest.approx(hand, rel=1e-6)
    with pytest.raises(ValueError):
        contrastive_loss(z1, z2, similarity="euclid")


# --- the table writer ------------------------------------------------------------------------------------


def test_table_puts_the_papers_number_beside_ours():
    study = STUDIES["dropout"]
    results = [
        {"cell": "p0.1", "seed": 42, "stsb_dev": 80.0},
        {"cell": "p0.1", "seed": 43, "stsb_dev": 82.0},
        {"cell": "fixed0.1", "seed": 42, "stsb_dev": 40.25},
        {"cell": "fixed0.1", "seed": 43, "stsb_dev": 40.25},
    ]
    table = report.markdown_table(study, report.aggregate(study, results))
    lines = table.splitlines()
    assert lines[0].startswith("| setting | STS-B dev (paper) | STS-B dev (ours) | STS-B dev min | STS-B dev max |")
    row = next(line for line in lines if line.startswith("| p = 0.1 |"))
    assert row.startswith("| p = 0.1 | 82.5 | 81.00 ± 1.41 | 80.00 | 82.00 |")  # std of (80, 82) = sqrt(2)
    assert "| fixed 0.1 (same mask for both views) | 43.6 | 40.25 ± 0.00 |" in table
    assert "| p = 0.0 | 71.1 | - | - | - | not run yet |" in table
    aug = report.markdown_table(STUDIES["augmentation"], {})
    assert "| synonym replacement | 77.4 | not run |" in aug and "nlpaug" in aug


def test_cli_prints_the_commands_of_a_subset_of_cells(capsys, tmp_path):
    from studies.__main__ import main

    assert main(["commands", "seeds", "--scale", "paper", "--cells", "unsup", "--seeds", "2",
                 "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("python train.py --model_name_or_path bert-base-uncased")
                                   for line in lines)
    assert "--seed 42" in lines[0] and "--seed 43" in lines[1] and "--load_best_model_at_end" in lines[0]
    with pytest.raises(ValueError, match="no cell"):
        runner.build_runs(STUDIES["seeds"], get_scale("cpu"), tmp_path, cells=["nope"])


def test_two_workers_share_a_study_through_run_locks(tmp_path):
    """A run locked by a live process is left to it; a lock left by a dead process is taken over."""
    import os
    import subprocess
    import sys

    study = Study("toy", "toy", "none", (Cell("a", "A", "unsup"), Cell("b", "B", "unsup")))
    scale = get_scale("cpu")
    run_a, run_b = runner.build_runs(study, scale, tmp_path)
    run_a.output_dir.mkdir(parents=True)
    (run_a.output_dir / runner.LOCK_FILE).write_text(str(os.getppid()))  # a live process "runs" cell a
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run_b.output_dir.mkdir(parents=True)
    (run_b.output_dir / runner.LOCK_FILE).write_text(dead.stdout.strip())  # a stopped worker's lock
    calls: list[str] = []
    results = runner.run_study(study, scale, tmp_path, trainer=_fake_trainer(calls))
    assert calls == ["b"] and [r["cell"] for r in results] == ["b"]
    assert not (run_b.output_dir / runner.LOCK_FILE).exists()  # released once finished
    # When the other worker has finished cell a, a later pass reads it into the table.
    _fake_trainer([])(list(run_a.argv))
    (run_a.output_dir / runner.RESULT_FILE).write_text(json.dumps({"cell": "a", "seed": 42, "stsb_dev": 1.0}))
    assert [r["cell"] for r in runner.run_study(study, scale, tmp_path, trainer=_fake_trainer(calls))] == ["a", "b"]
