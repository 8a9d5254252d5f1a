"""Tiny random encoders of every supported model type, each with a tiny tokenizer built offline.

The tokenizer is a ``tokenizers`` WordPiece model over the words of a few sentences (plus letters), with the
family's own special tokens (``[CLS]``/``[SEP]`` or ``<s>``/``</s>``, the pad id its config expects) and
its own model inputs (``token_type_ids`` only where the family's tokenizer gives them), wrapped in
``PreTrainedTokenizerFast``: no hub, no vocab files. Configs are transformers' test sizes (hidden 32,
2 layers, 4 heads), so a model builds and runs in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, PreTrainedTokenizerFast

from simcse.families import SUPPORTED_MODEL_TYPES

CORPUS = [
    "a man is playing the guitar .",
    "the dog runs in the park",
    "children eat food at the table",
    "a cat sleeps on the warm sofa",
    "two women are walking down the street",
    "the weather is nice and sunny today",
    "he reads a long book about history",
    "people are dancing to loud music",
]

ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "mpnet")
WITH_TOKEN_TYPES = ("bert", "albert", "electra", "deberta-v2")


def make_family_tokenizer(model_type: str) -> PreTrainedTokenizerFast:
    if model_type in ROBERTA_LIKE:
        specials = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                    "mask_token": "<mask>"}
        order = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # pad id 1, as their configs expect
        cls, sep = "<s>", "</s>"
    else:
        specials = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                    "mask_token": "[MASK]"}
        order = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        cls, sep = "[CLS]", "[SEP]"
    # A fixed vocabulary (the trainer's tie-breaking is not deterministic): the corpus words, then letters
    # and word-piece letters so that any lowercase word still tokenises.
    words = sorted({w for line in CORPUS for w in line.split()})
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = list(dict.fromkeys([*order, *words, *letters, *(f"##{c}" for c in letters)]))
    tok = Tokenizer(models.WordPiece(vocab={p: i for i, p in enumerate(pieces)}, unk_token=specials["unk_token"]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tok.token_to_id(cls), tok.token_to_id(sep)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1", special_tokens=[(cls, cls_id), (sep, sep_id)]
    )
    names = ["input_ids", "token_type_ids", "attention_mask"] if model_type in WITH_TOKEN_TYPES else [
        "input_ids", "attention_mask"]
    extra = {"cls_token": cls, "sep_token": sep} if model_type in ROBERTA_LIKE else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_input_names=names, model_max_length=64,
                                   **specials, **extra)


def make_family_config(model_type: str, tokenizer: PreTrainedTokenizerFast, dropout: float = 0.1, **overrides):
    kw = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=37, max_position_embeddings=72, hidden_dropout_prob=dropout,
              attention_probs_dropout_prob=dropout, pad_token_id=tokenizer.pad_token_id)
    if model_type == "distilbert":
        kw = dict(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                  max_position_embeddings=72, dropout=dropout, attention_dropout=dropout,
                  pad_token_id=tokenizer.pad_token_id)
    elif model_type in ("albert", "electra"):
        kw["embedding_size"] = 16  # factorised embeddings: projected to the hidden size
    elif model_type == "deberta-v2":  # the DeBERTa-v3 layout: relative attention, no absolute positions
        kw.update(relative_attention=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                  position_buckets=16, max_relative_positions=-1)
    elif model_type == "modernbert":
        for k in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            kw.pop(k)
        kw.update(global_attn_every_n_layers=2, local_attention=4, cls_token_id=tokenizer.cls_token_id,
                  sep_token_id=tokenizer.sep_token_id, bos_token_id=None, eos_token_id=None,
                  attention_dropout=dropout, embedding_dropout=dropout, mlp_dropout=dropout)
    if model_type in ROBERTA_LIKE:
        kw.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    kw.update(overrides)
    return AutoConfig.for_model(model_type, **kw)


def make_family_dir(path: Path, model_type: str, seed: int = 0, mlm: bool = False, dropout: float = 0.1) -> Path:
    """A random tiny pre-trained checkpoint (``AutoModel``, or ``AutoModelForMaskedLM`` with ``mlm``) and its
    tokenizer in ``path``."""
    torch.manual_seed(seed)
    tokenizer = make_family_tokenizer(model_type)
    config = make_family_config(model_type, tokenizer, dropout=dropout)
    model = (AutoModelForMaskedLM if mlm else AutoModel).from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


__all__ = ["CORPUS", "SUPPORTED_MODEL_TYPES", "make_family_config", "make_family_dir", "make_family_tokenizer"]
