"""Tolerances for the numerical-equality tests, derived from the dtype and the scale of what is compared.

Why this module exists: the same float32 computation done in another order (another BLAS kernel,
another thread count, another CPU) legitimately gives other last digits. A fixed ``atol=1e-6`` is
~8 float32 ulps for a value of size 1 but 1e-3 relative for a gradient of size 1e-3, so such a test
passes on one machine and fails on the next. Every comparison in tests/ therefore states

* a **scale**: ``max|expected|`` by default, or a scale passed in where a tensor is mathematically
  (close to) zero but is the product of a computation on larger numbers. Rounding errors are
  proportional to the magnitudes that flowed through the computation, not to the result: the
  gradient of a key bias is exactly 0 in exact arithmetic (softmax ignores a constant shift) and is
  pure rounding noise (~1e-12 of the model's largest gradient) in practice. Gradients are therefore
  compared against the largest gradient of the whole model (``assert_grads_close``).
* a **relative tolerance** ``rtol_for(dtype, kind)`` = machine epsilon of the dtype times a growth
  factor for the kind of computation (below). The check is ``max|actual - expected| <= rtol * scale``.

Growth factors, measured on the tiny random BERT/RoBERTa of tests/conftest.py and all-MiniLM-L6-v2:

* ``"forward"`` (128): values of a forward pass (embeddings, logits, losses, statistics) computed
  two ways. Inner products of length K (K <= 1536 here) round to ~eps*sqrt(K), a few layers deep;
  measured differences stay below ~10 eps of the scale. 128 eps is 1.5e-5 in float32 and 2.8e-14 in
  float64, while the mistakes these tests guard against (a wrong pooler or layer, a dropped MLP, a
  missing 1/temp or hard-negative weight) move values by 1e-3 or more.
* ``"backward"`` (1e6): gradients of the contrastive loss computed two ways. Logits are scaled by
  1/temp = 20 and the gradient is a sum of softmax-weighted terms that nearly cancel, so reordering
  is amplified: measured up to ~1e4 eps of the largest gradient (1.2e-3 in float32, 1.4e-12 in
  float64). Float32 gradients are thus *not* comparable to a useful tolerance; where gradient
  equality is the point, both sides are computed in float64 (``model.double()``), where 1e6 eps is
  2.2e-10: 100x above the measured noise and 1e6x below a 1e-4 relative real error.

Rank statistics (Spearman's rho of float32 cosines) do not move smoothly: rounding can swap two
near-equal scores. ``spearman_rounding_tolerance`` bounds that: swapping two neighbouring scores
changes rho by 12 |g_i - g_j| / (n (n^2 - 1)) (g: the gold ranks), summed over the neighbours closer
than twice the scores' float32 tolerance, and doubled for ties and chains.

``assert_close_scaled`` raises an AssertionError that names what was compared, the worst element,
the scale and the tolerance, so a failure on a new machine says how far off it is. With
``SIMCSE_NUMERICS_LOG=<file>`` every comparison appends ``<error/scale> <rtol> <what>`` to that file,
to see the margins a machine leaves (``sort -g`` it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch

GROWTH = {"forward": 128.0, "backward": 1e6}


def rtol_for(dtype: torch.dtype | np.dtype | type, kind: str = "forward") -> float:
    """Relative tolerance (to the scale) for values of ``dtype`` produced by a computation of ``kind``."""
    if not isinstance(dtype, torch.dtype):
        dtype = torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
    return torch.finfo(dtype).eps * GROWTH[kind]


def _as_tensor(x) -> torch.Tensor:
    """Tensors and arrays keep their dtype; Python numbers and lists are float64 (what Python computes in)."""
    if isinstance(x, (torch.Tensor, np.ndarray, np.generic)):
        t = torch.as_tensor(x)
    else:
        t = torch.tensor(x, dtype=torch.float64)
    return t if t.is_floating_point() else t.double()


def assert_close_scaled(
    actual,
    expected,
    *,
    rtol: float | None = None,
    kind: str = "forward",
    scale: float | None = None,
    what: str = "value",
) -> None:
    """Assert ``max|actual - expected| <= rtol * scale`` (tensors, arrays or floats; shapes must match).

    ``rtol`` defaults to ``rtol_for(<dtype of actual and expected>, kind)`` (the coarser of the two
    dtypes); ``scale`` defaults to ``max|expected|``. A zero scale is refused: say what the scale is.
    """
    a, e = _as_tensor(actual).detach().cpu(), _as_tensor(expected).detach().cpu()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    if rtol is None:
        coarse = a.dtype if torch.finfo(a.dtype).eps >= torch.finfo(e.dtype).eps else e.dtype
        rtol = rtol_for(coarse, kind)
    a, e = a.double(), e.double()
    assert torch.isfinite(a).all() and torch.isfinite(e).all(), f"{what}: non-finite values"
    if scale is None:
        scale = float(e.abs().max()) if e.numel() else 0.0
    assert scale > 0, f"{what}: zero scale; pass the scale of the quantities it was computed from"
    if a.numel() == 0:
        return
    diff = (a - e).abs()
    worst = float(diff.max())
    if os.environ.get("SIMCSE_NUMERICS_LOG"):
        with open(os.environ["SIMCSE_NUMERICS_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{worst / scale:.3e} {rtol:.2e} {what}\n")
    if not worst <= rtol * scale:
        where = np.unravel_index(int(diff.argmax()), tuple(diff.shape)) if diff.dim() else ()
        raise AssertionError(
            f"{what}: max |actual - expected| = {worst:.3e} at {tuple(int(i) for i in where)} "
            f"(actual {float(a.reshape(-1)[diff.argmax()]):.6e}, expected {float(e.reshape(-1)[diff.argmax()]):.6e}) "
            f"> rtol {rtol:.2e} x scale {scale:.3e} = {rtol * scale:.3e} ({worst / scale:.2e} of the scale)"
        )


def is_close_scaled(actual, expected, **kwargs) -> bool:
    """``assert_close_scaled`` as a predicate (for "one of these rows" checks)."""
    try:
        assert_close_scaled(actual, expected, **kwargs)
    except AssertionError:
        return False
    return True


def spearman_rounding_tolerance(scores, gold, *, dtype: torch.dtype = torch.float32) -> float:
    """How far float rounding of ``scores`` (of ``dtype``) can move Spearman's rho against ``gold``.

    Zero where no two scores are closer than the dtype's tolerance; plus float64 slack for the
    correlation arithmetic itself.
    """
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    order = np.argsort(s, kind="stable")
    g = rankdata(np.asarray(gold, dtype=np.float64))[order]
    delta = rtol_for(dtype) * float(np.abs(s).max())
    near = np.diff(s[order]) <= 2 * delta  # neighbours that rounding may swap
    swaps = 12.0 * float(np.abs(np.diff(g))[near].sum()) / (n * (n * n - 1.0))
    return 2.0 * swaps + 1e-12


def assert_grads_close(
    actual: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    *,
    rtol: float | None = None,
    what: str = "grad",
) -> None:
    """Per-parameter gradient equality against the largest gradient of the whole model as the scale.

    The same parameter names must have gradients on both sides. ``rtol`` defaults to the dtype's
    ``"backward"`` tolerance, which is only meaningful in float64 (see the module docstring).
    """
    assert actual.keys() == expected.keys(), f"{what}: parameters differ: {sorted(set(actual) ^ set(expected))}"
    scale = max(float(g.detach().abs().max()) for g in expected.values())
    for name, want in expected.items():
        assert_close_scaled(actual[name], want, rtol=rtol, kind="backward", scale=scale, what=f"{what} {name}")
