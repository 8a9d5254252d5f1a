"""The SimCSE settings, in one place: name, default, help, validation and ``config.json`` key.

Two kinds of option exist and are kept apart:

* :class:`SimCSESettings` change what is trained (the loss, the pooler, the objective). They are written
  into the checkpoint's ``config.json`` under their own names, so a checkpoint describes itself; the
  command line (``simcse.arguments.ModelArguments``), ``load_cl_model``, conversion, the model card and
  evaluation all read them from here.
* :class:`RuntimeOptions` change only how fast the same numbers are computed (length buckets, the
  [CLS]-only last layer, the attention kernel). They are never saved in a checkpoint; the model receives
  them once, when it is built (``load_cl_model(..., runtime=...)``).

See docs/FAITHFULNESS.md ("Poolers", "Contrastive loss", "MLM auxiliary objective", "Distributed gathering")
for what each setting does and how it relates to the original code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The poolers that can be trained (the legacy first-last variant exists only to evaluate baselines).
TRAIN_POOLERS: tuple[str, ...] = ("cls", "cls_before_pooler", "avg", "avg_top2", "avg_first_last")

# The similarities of the contrastive loss (simcse.losses.contrastive_loss): the paper's and Table D.1's.
SIMILARITIES: tuple[str, ...] = ("cosine", "dot")

# 0 = automatic: simcse.length_buckets picks 4 on the CPU and 1 (one padded pass) elsewhere.
DEFAULT_LENGTH_BUCKETS = 0


def _setting(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class SimCSESettings:
    """Every SimCSE training setting with the paper's default. Field name = flag name = config.json key."""

    pooler_type: str = _setting("cls", f"Sentence pooler used in training, one of {', '.join(TRAIN_POOLERS)}.")
    temp: float = _setting(0.05, "Softmax temperature tau.")
    mlp_only_train: bool = _setting(
        False, "Use the MLP in training only; embeddings are the raw [CLS] (unsup recipe)."
    )
    hard_negative_weight: float = _setting(
        0.0, "LOG of the weight of an anchor's own hard negative (0 = weight 1)."
    )
    do_mlm: bool = _setting(False, "Add the auxiliary masked-LM loss.")
    mlm_weight: float = _setting(0.1, "Weight lambda of the MLM loss.")
    gather_negatives: bool = _setting(
        True, "(ours) Under DDP, use every rank's sentences as negatives, as the paper does."
    )
    similarity: str = _setting(
        "cosine",
        "(ours) Similarity in the contrastive loss: cosine (the paper's) or dot (dot product without "
        "normalisation, paper Table D.1; still divided by --temp, so --temp 1 gives the plain dot product).",
    )

    def __post_init__(self) -> None:
        problem = settings_problem(dataclasses.asdict(self))
        if problem:
            raise ValueError(problem)

    # ------------------------------------------------------------------------------- config.json

    def to_dict(self) -> dict[str, Any]:
        """``{config key: value}`` for every setting (what ``config.json`` records)."""
        return dataclasses.asdict(self)

    def to_config(self, config: Any) -> Any:
        """Write every setting into ``config`` (a ``PretrainedConfig`` or a dict); returns it."""
        for key, value in self.to_dict().items():
            if isinstance(config, dict):
                config[key] = value
            else:
                setattr(config, key, value)
        return config

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> SimCSESettings:
        """The settings a config records, defaults for the keys it lacks (plain pre-trained checkpoints
        record none), then ``overrides``. ``config``: a ``PretrainedConfig``, a dict, or None."""
        values: dict[str, Any] = {}
        for key in CONFIG_KEYS:
            found = config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)
            if found is not None:
                values[key] = found
        unknown = set(overrides) - set(CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unknown SimCSE setting(s) {sorted(unknown)}; known: {', '.join(CONFIG_KEYS)}")
        return cls(**{**values, **overrides})

    @staticmethod
    def recorded_in(config: Any) -> dict[str, Any]:
        """The settings ``config`` (a dict) actually records, in field order (for the model card)."""
        return {k: config[k] for k in CONFIG_KEYS if k in config}

    def replace(self, **changes: Any) -> SimCSESettings:
        return dataclasses.replace(self, **changes)

    # --------------------------------------------------------------------------------- meaning

    @property
    def eval_pooler(self) -> str:
        """The pooler the trained checkpoint is *used* with (see :func:`test_time_pooler`)."""
        return test_time_pooler(self.pooler_type, self.mlp_only_train)


CONFIG_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SimCSESettings))
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(SimCSESettings)}


def test_time_pooler(pooler_type: str, mlp_only_train: bool) -> str:
    """The pooler a model trained with ``pooler_type`` is used with: the unsupervised recipe
    (``mlp_only_train``) trains with the MLP and embeds with the raw [CLS] vector."""
    if pooler_type == "cls" and mlp_only_train:
        return "cls_before_pooler"
    return pooler_type


def settings_problem(values: Mapping[str, Any]) -> str | None:
    """The first invalid value among ``values`` (a settings dict) as one message, or None."""
    pooler_type = values.get("pooler_type", DEFAULTS["pooler_type"])
    if pooler_type not in TRAIN_POOLERS:
        return f"--pooler_type {pooler_type!r} is not one of: {', '.join(TRAIN_POOLERS)}"
    similarity = values.get("similarity", DEFAULTS["similarity"])
    if similarity not in SIMILARITIES:
        return f"--similarity {similarity!r} is not one of: {', '.join(SIMILARITIES)}"
    for name in ("temp", "mlm_weight", "hard_negative_weight"):
        value = values.get(name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"--{name} must be a number, got {value!r}"
    if values.get("temp", DEFAULTS["temp"]) <= 0:
        return f"--temp must be positive, got {values['temp']}"
    for name in ("mlp_only_train", "do_mlm", "gather_negatives"):
        if not isinstance(values.get(name, DEFAULTS[name]), bool):
            return f"--{name} must be true or false, got {values[name]!r}"
    return None


@dataclass(frozen=True)
class RuntimeOptions:
    """Options of this run's forward that are not part of the checkpoint, given to the model once, when built.

    The first three are speed options of the training forward and of evaluation: the same numbers,
    computed differently. ``same_dropout_mask`` is the one exception: an ablation switch of the
    unsupervised training forward that *changes* the loss; it lives here, not in :class:`SimCSESettings`,
    because the trained checkpoint is used exactly like any other (nothing to record in config.json).

    length_buckets: encode each training batch as N length-sorted buckets (0 = automatic: 4 on the CPU,
        1 on GPUs and under torch.compile; 1 = one padded pass as the original); see simcse.length_buckets.
    cls_only_last_layer: with a [CLS] pooler, run the last layer at [CLS] only, in training and in
        evaluation (simcse.cls_shortcut); False = the full last layer, as the original.
    attn_implementation: transformers' attention kernel (sdpa, eager, ...); None = transformers' choice.
    same_dropout_mask: the "fixed 0.1" ablation (paper Table 3; docs/FAITHFULNESS.md, "Dropout, views and
        augmentations"): each unsupervised sentence is encoded once and that embedding is both views, so the
        two views share one dropout mask. False (default) = two independent passes, as the paper.
    """

    length_buckets: int = DEFAULT_LENGTH_BUCKETS
    cls_only_last_layer: bool = True
    attn_implementation: str | None = None
    same_dropout_mask: bool = False

    def __post_init__(self) -> None:
        if self.length_buckets < 0:
            raise ValueError(f"--length_buckets must be >= 0 (0 = automatic), got {self.length_buckets}")

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """The options transformers' ``from_pretrained`` handles itself."""
        return {"attn_implementation": self.attn_implementation} if self.attn_implementation else {}


__all__ = [
    "CONFIG_KEYS", "DEFAULTS", "RuntimeOptions", "SIMILARITIES", "SimCSESettings", "TRAIN_POOLERS", "settings_problem",
    "test_time_pooler",
]
