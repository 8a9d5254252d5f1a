"""Which SentEval data files a run will read, checked before the run starts.

A missing transfer file used to surface after training (at the final evaluation), and a missing STS file
after the model was loaded; listing the files each task reads lets train.py and evaluation.py fail first,
with one line naming the first missing file. The file names follow the task classes in SentEval/senteval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

_STS_YEARS: dict[str, tuple[str, tuple[str, ...]]] = {
    "STS12": ("STS12-en-test", ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews")),
    "STS13": ("STS13-en-test", ("FNWN", "headlines", "OnWN")),
    "STS14": ("STS14-en-test", ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news")),
    "STS15": ("STS15-en-test", ("answers-forums", "answers-students", "belief", "headlines", "images")),
    "STS16": ("STS16-en-test", ("answer-answer", "headlines", "plagiarism", "postediting", "question-question")),
}
_SPLIT_FILES: dict[str, dict[str, str]] = {
    "STSBenchmark": {s: f"STS/STSBenchmark/sts-{s}.csv" for s in ("train", "dev", "test")},
    "SICKRelatedness": {"train": "SICK/SICK_train.txt", "dev": "SICK/SICK_trial.txt",
                        "test": "SICK/SICK_test_annotated.txt"},
}
_FIXED_FILES: dict[str, tuple[str, ...]] = {
    "MR": ("MR/rt-polarity.pos", "MR/rt-polarity.neg"),
    "CR": ("CR/custrev.pos", "CR/custrev.neg"),
    "SUBJ": ("SUBJ/subj.objective", "SUBJ/subj.subjective"),
    "MPQA": ("MPQA/mpqa.pos", "MPQA/mpqa.neg"),
    "SST2": tuple(f"SST/binary/sentiment-{s}" for s in ("train", "dev", "test")),
    "TREC": ("TREC/train_5500.label", "TREC/TREC_10.label"),
    "MRPC": ("MRPC/msr_paraphrase_train.txt", "MRPC/msr_paraphrase_test.txt"),
}
ALL_SPLITS = ("train", "dev", "test")


def task_files(task: str, splits: Sequence[str] = ALL_SPLITS) -> list[str]:
    """Files (relative to the ``downstream`` folder) that ``task`` reads; ``splits`` limits STS-B/SICK-R.

    The ``-finetune`` variants read all three splits; unknown tasks read nothing (they are refused elsewhere).
    """
    if task in _STS_YEARS:
        folder, subsets = _STS_YEARS[task]
        return [f"STS/{folder}/STS.{kind}.{s}.txt" for s in subsets for kind in ("input", "gs")]
    base = task.removesuffix("-finetune")
    if base in _SPLIT_FILES:
        wanted = ALL_SPLITS if task.endswith("-finetune") else splits
        return [_SPLIT_FILES[base][s] for s in wanted]
    return list(_FIXED_FILES.get(task, ()))


def missing_file(data_dir: str | Path, tasks: Iterable[str], splits: Sequence[str] = ALL_SPLITS) -> Path | None:
    """The first file that the tasks need and ``data_dir`` lacks, or None."""
    root = Path(data_dir)
    if (root / "downstream").is_dir():
        root = root / "downstream"  # SentEval accepts the folder above downstream too
    for task in tasks:
        for rel in task_files(task, splits):
            if not (root / rel).is_file():
                return root / rel
    return None


def splits_for_mode(mode: str) -> tuple[str, ...]:
    """The STS-B/SICK-R split each evaluation mode reads (dev mode: dev; test and fasttest: test)."""
    return ("dev",) if mode == "dev" else ("test",)
