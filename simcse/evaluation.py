"""Evaluation library behind ``evaluation.py`` and in-training evaluation (SPEC 5).

Wraps the vendored SentEval engine: one ``SE`` per run whose embedding cache encodes each distinct
sentence once, only the splits the chosen mode reports, in token-length-sorted batches.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prettytable import PrettyTable

from simcse.poolers import check_pooler_type, embed_with_hf_encoder, eval_pooler_from_config

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
STS_TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")
TRANSFER_TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
TASK_SETS = {"sts": STS_TASKS, "transfer": TRANSFER_TASKS, "full": STS_TASKS + TRANSFER_TASKS}
DEFAULT_TASKS = STS_TASKS[:5] + ("MR", "CR", "MPQA", "SUBJ", "SST2", "TREC", "MRPC", "SICKRelatedness",
                                 "STSBenchmark")
MODES = ("test", "dev", "fasttest")
ENCODE_CHUNK = 4096  # sentences per call of our embed function from the SentEval engine
DEV_STS = ("STSBenchmark", "SICKRelatedness")

FULL_CLASSIFIER = {"nhid": 0, "optim": "adam", "batch_size": 64, "tenacity": 5, "epoch_size": 4}
FAST_CLASSIFIER = {"nhid": 0, "optim": "rmsprop", "batch_size": 128, "tenacity": 3, "epoch_size": 2}

EmbedFn = Callable[[list[str]], torch.Tensor]


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """explicit argument > $SENTEVAL_DATA_DIR > <repo>/SentEval/data/downstream; must exist."""
    from senteval.utils import DataError

    chosen = data_dir or os.environ.get("SENTEVAL_DATA_DIR") or REPO_ROOT / "SentEval" / "data" / "downstream"
    path = Path(chosen)
    if not path.is_dir():
        raise DataError(path, "SentEval data directory not found; run SentEval/data/downstream/download_dataset.sh "
                        "or pass --data_dir / set SENTEVAL_DATA_DIR")
    return path


def default_device() -> str:
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def load_encoder(model_name_or_path: str | Path, device: str | torch.device | None = None):
    """(model, tokenizer) via AutoModel/AutoTokenizer, in eval mode on ``device``.

    The transformers loading report is kept on ``model.simcse_loading_info`` so callers can tell
    whether the HF pooler (used by ``--pooler cls``) was trained or newly initialised.
    """
    from transformers import AutoModel, AutoTokenizer

    from simcse.load_errors import check_loading_info, check_model_source, translate_load_errors

    source = str(model_name_or_path)
    check_model_source(source)  # one-line ModelLoadError for a bad path, folder or offline hub id
    with translate_load_errors(source, part="tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(source)
    with translate_load_errors(source):
        model, info = AutoModel.from_pretrained(source, output_loading_info=True, ignore_mismatched_sizes=True)
    check_loading_info(info, source)
    model.simcse_loading_info = info
    model.to(device or default_device())
    model.eval()
    return model, tokenizer


def pooler_newly_initialised(model) -> bool:
    """True when the checkpoint had no ``pooler.*`` weights (transformers initialised them randomly)."""
    info = getattr(model, "simcse_loading_info", None) or {}
    return any("pooler." in k for k in info.get("missing_keys", ()))


def cls_pooler_warning(model, pooler: str) -> str | None:
    """SPEC 4: ``cls`` on a checkpoint with a random pooler silently gives ~57 avg; explain it."""
    if pooler != "cls" or eval_pooler_from_config(model.config) is not None or not pooler_newly_initialised(model):
        return None
    return ("warning: pooler 'cls' reads the HF pooler layer, but this checkpoint has no trained pooler weights "
            "(newly initialised) and its config records no SimCSE pooler; convert the checkpoint "
            "(simcse_to_huggingface) or use --pooler cls_before_pooler / avg")


def model_max_length(model, tokenizer) -> int:
    """Longest input the encoder accepts: min(tokenizer limit, position embeddings minus RoBERTa's offset)."""
    limit = getattr(model.config, "max_position_embeddings", None) or 512
    if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= (getattr(model.config, "pad_token_id", 1) or 1) + 1
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if tok_limit is not None and tok_limit < 1_000_000:
        limit = min(limit, int(tok_limit))
    return int(limit)


def _length_batches(order: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """Cut the length-sorted ``order`` into batches of at most ``batch_size`` that never mix token
    lengths unless a length group is small: full batches need no padding at all, which saves the
    padded positions' compute. Groups shorter than a quarter batch are merged with their neighbours.
    """
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        boundary = cur and lengths[i] != lengths[cur[-1]] and len(cur) >= batch_size // 4
        if len(cur) == batch_size or boundary:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def make_embed_fn(model, tokenizer, pooler: str, device: str | torch.device | None = None,
                  max_seq_length: int | None = None, batch_size: int = 128,
                  cls_only_last_layer: bool = True) -> EmbedFn:
    """sentences -> (n, H) float CPU tensor with the given pooler (SPEC 5.3, no L2 normalisation).

    Tokenises once, sorts by *token* length (less padding than word counts), runs batches of
    ``batch_size`` under ``inference_mode`` and restores the input order. Sentences longer than
    ``max_seq_length`` (default: the model's limit) are truncated instead of crashing. With a [CLS]
    pooler the last layer runs at [CLS] only (``cls_only_last_layer``; the same vectors, less work).
    """
    check_pooler_type(pooler)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    max_len = max_seq_length or model_max_length(model, tokenizer)

    def embed(sentences: list[str]) -> torch.Tensor:
        if not sentences:
            return torch.zeros(0, model.config.hidden_size)
        enc = tokenizer(list(sentences), truncation=True, max_length=max_len, padding=False)
        ids = enc["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = torch.empty(len(ids), model.config.hidden_size)
        keys = [k for k in enc.keys() if k in ("input_ids", "attention_mask", "token_type_ids")]
        with torch.inference_mode():
            for idx in _length_batches(order, [len(x) for x in ids], batch_size):
                feats = tokenizer.pad([{k: enc[k][i] for k in keys} for i in idx], return_tensors="pt")
                batch = {k: v.to(dev) for k, v in feats.items()}
                out[idx] = embed_with_hf_encoder(model, batch, pooler, cls_only_last_layer).float().cpu()  # (b, H)
        return out

    return embed


def _batcher(embed_fn: EmbedFn):
    """SentEval batcher: token lists -> joined strings (bytes decoded as UTF-8) -> embeddings."""

    def batcher(params, batch: list[list[Any]]) -> np.ndarray:
        if batch and batch[0] and isinstance(batch[0][0], bytes):
            batch = [[w.decode("utf-8") for w in s] for s in batch]
        return embed_fn([" ".join(s) for s in batch]).numpy()

    return batcher


def senteval_params(mode: str, data_dir: Path, batch_size: int = 128, device: str | None = None,
                    progress: bool = True, classifier_optim: str | None = None) -> dict:
    """SPEC 5.2 parameters; STS-B/SICK only load the split the mode reports.

    ``classifier_optim`` (e.g. "lbfgs") replaces only the mode's transfer optimizer, so k-fold, batch
    size, tenacity and epoch size still follow the mode; None keeps the paper protocol.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
    full = mode == "test"
    classifier = dict(FULL_CLASSIFIER if full else FAST_CLASSIFIER)
    if classifier_optim is not None:
        classifier["optim"] = classifier_optim
    return {
        "task_path": str(data_dir),
        "usepytorch": True,
        "kfold": 10 if full else 5,
        "classifier": classifier,
        "batch_size": batch_size,
        "seed": 1111,
        "device": device,
        "progress": progress,
        "sts_splits": ("dev",) if mode == "dev" else ("test",),
    }


def run_senteval(embed_fn: EmbedFn, tasks: Sequence[str], mode: str = "test", data_dir: str | Path | None = None,
                 batch_size: int = 128, device: str | None = None, progress: bool = True,
                 classifier_optim: str | None = None) -> dict:
    """Evaluate ``tasks`` with one shared embedding cache; returns ``{task: SentEval result}``.

    ``classifier_optim`` overrides the transfer classifier's optimizer (see ``senteval_params``).
    """
    import senteval

    params = senteval_params(mode, resolve_data_dir(data_dir), batch_size, device, progress, classifier_optim)
    # embed_fn sorts by token length and batches by batch_size itself: hand it large chunks of the engine's
    # word-count order, so its token-length batches pad less (the vectors are the same).
    params["encode_chunk"] = ENCODE_CHUNK
    se = senteval.SE(params, _batcher(embed_fn))
    return {task: se.eval(task) for task in tasks}


def _fmt(x: float) -> str:
    return f"{x:.2f}"  # same rounding as "%.2f"


def _table(names: Sequence[str], values: Sequence[str], with_avg: bool) -> str:
    if with_avg:
        names = [*names, "Avg."]
        values = [*values, _fmt(sum(float(v) for v in values) / len(values))]
    tb = PrettyTable()
    tb.field_names = list(names)
    tb.add_row(list(values))
    return tb.get_string()


def table_values(results: dict, mode: str) -> dict[str, dict[str, str]]:
    """The printed numbers (SPEC 5.4) as strings: {'sts': {task: '%.2f'}, 'transfer': {...}}."""
    sts, transfer = {}, {}
    if mode == "dev":
        for t in DEV_STS:
            sts[t] = _fmt(results[t]["dev"]["spearman"][0] * 100) if t in results else "0.00"
        for t in TRANSFER_TASKS:
            transfer[t] = _fmt(results[t]["devacc"]) if t in results else "0.00"
    else:
        for t in STS_TASKS:
            if t not in results:
                sts[t] = "0.00"
            elif t in DEV_STS:
                sts[t] = _fmt(results[t]["test"]["spearman"][0] * 100)
            else:
                sts[t] = _fmt(results[t]["all"]["spearman"]["all"] * 100)
        for t in TRANSFER_TASKS:
            transfer[t] = _fmt(results[t]["acc"]) if t in results else "0.00"
    return {"sts": sts, "transfer": transfer}


def format_tables(results: dict, mode: str, tasks: Sequence[str] | None = None) -> str:
    """The text evaluation.py prints: header line, STS table, transfer table (SPEC 5.4)."""
    vals = table_values(results, mode)
    lines = [f"------ {mode} ------"]
    if mode == "dev":
        lines.append(_table(list(vals["sts"]), list(vals["sts"].values()), with_avg=False))
        lines.append(_table(list(vals["transfer"]), list(vals["transfer"].values()), with_avg=True))
    else:
        lines.append(_table(list(vals["sts"]), list(vals["sts"].values()), with_avg=True))
        lines.append(_table(list(vals["transfer"]), list(vals["transfer"].values()), with_avg=True))
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    """SentEval results (scipy result tuples, numpy scalars/arrays) -> plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if hasattr(obj, "statistic") and hasattr(obj, "pvalue"):
        return {"statistic": float(obj.statistic), "pvalue": float(obj.pvalue)}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def versions() -> dict[str, str]:
    import scipy
    import sklearn
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__}


def dev_metrics(embed_fn: EmbedFn, data_dir: str | Path | None = None, eval_transfer: bool = False,
                batch_size: int = 128, device: str | None = None, progress: bool = False) -> dict[str, float]:
    """In-training metrics: STS-B dev and SICK trial cosine Spearman (raw, in [-1, 1]) and their mean;
    with ``eval_transfer`` also the transfer dev accuracies (percent, fast classifier) and their mean.
    Only the dev splits of STS-B/SICK are encoded.
    """
    tasks = DEV_STS + (TRANSFER_TASKS if eval_transfer else ())
    res = run_senteval(embed_fn, tasks, "dev", data_dir, batch_size, device, progress)
    out = {
        "stsb_spearman": float(res["STSBenchmark"]["dev"]["spearman"][0]),
        "sickr_spearman": float(res["SICKRelatedness"]["dev"]["spearman"][0]),
    }
    out["avg_sts"] = (out["stsb_spearman"] + out["sickr_spearman"]) / 2
    if eval_transfer:
        for t in TRANSFER_TASKS:
            out[t] = float(res[t]["devacc"])
        out["avg_transfer"] = float(np.mean([out[t] for t in TRANSFER_TASKS]))
    return out
