"""The comparison helpers of tests/numerics.py: they accept float rounding from another summation order
and reject the small real errors the numerical tests are meant to catch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.numerics import (
    assert_close_scaled,
    assert_grads_close,
    is_close_scaled,
    rtol_for,
    spearman_rounding_tolerance,
)


def _matmul_two_orders(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """x @ w as one BLAS call and as a sum of 48 partial products added in reverse: the same maths."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1536, generator=g, dtype=dtype)
    w = torch.randn(1536, 32, generator=g, dtype=dtype) / 40
    blas = x @ w
    parts = [x[:, i : i + 32] @ w[i : i + 32] for i in range(0, 1536, 32)]
    reordered = torch.zeros_like(blas)
    for part in reversed(parts):
        reordered = reordered + part
    return blas, reordered


def test_tolerances_follow_the_dtype():
    assert rtol_for(torch.float32) == pytest.approx(128 * 2.0**-23)
    assert rtol_for(np.float64) == rtol_for(torch.float64) == pytest.approx(128 * 2.0**-52)
    assert rtol_for(torch.float64, "backward") < 1e-9  # exact-maths gradient checks in float64
    assert rtol_for(torch.float32, "backward") > 1e-2  # too loose to be useful: float32 gradients are not compared


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_accepts_another_summation_order(dtype):
    blas, reordered = _matmul_two_orders(dtype)
    assert not torch.equal(blas, reordered)  # the orders do round differently
    assert_close_scaled(reordered, blas)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_accepts_another_thread_count(dtype):
    before = torch.get_num_threads()
    x = torch.randn(256, 1536, generator=torch.Generator().manual_seed(1), dtype=dtype)
    try:
        torch.set_num_threads(1)
        one = x @ x.T
        torch.set_num_threads(2)
        two = x @ x.T
    finally:
        torch.set_num_threads(before)
    assert_close_scaled(two, one)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "mutation",
    ["one element +1e-3 of the scale", "all elements x (1 + 1e-4)", "two rows swapped", "sign of one row"],
)
def test_rejects_small_real_errors(dtype, mutation):
    expected, _ = _matmul_two_orders(dtype)
    broken = expected.clone()
    scale = float(expected.abs().max())
    if mutation == "one element +1e-3 of the scale":
        broken[3, 5] += 1e-3 * scale
    elif mutation == "all elements x (1 + 1e-4)":
        broken *= 1 + 1e-4
    elif mutation == "two rows swapped":
        broken[[0, 1]] = broken[[1, 0]]
    else:
        broken[7] = -broken[7]
    with pytest.raises(AssertionError, match="max \\|actual - expected\\|"):
        assert_close_scaled(broken, expected, what=mutation)
    assert not is_close_scaled(broken, expected)


def test_float32_against_float64_uses_the_float32_tolerance():
    exact = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) / 3
    assert_close_scaled(exact.float(), exact)  # rounding to float32 is within float32's tolerance
    with pytest.raises(AssertionError):
        assert_close_scaled(exact.float().double(), exact)  # ... not within float64's
    assert_close_scaled(exact.float().double(), exact, rtol=rtol_for(torch.float32))


def test_shapes_zero_scale_and_non_finite_are_refused():
    with pytest.raises(AssertionError, match="shape"):
        assert_close_scaled(torch.zeros(3), torch.zeros(1, 3))
    with pytest.raises(AssertionError, match="zero scale"):
        assert_close_scaled(torch.zeros(3), torch.zeros(3))
    assert_close_scaled(torch.zeros(3), torch.zeros(3), scale=1.0)
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close_scaled(torch.tensor([float("nan")]), torch.tensor([1.0]))


def test_python_numbers_are_float64():
    assert_close_scaled(0.1 + 0.2, 0.3)
    with pytest.raises(AssertionError):
        assert_close_scaled(0.3 * (1 + 1e-12), 0.3)  # float64 tolerance: 2.8e-14


def _grads(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "weight": torch.randn(8, 4, generator=g, dtype=torch.float64) * 1e-3,
        "key.bias": torch.randn(4, generator=g, dtype=torch.float64) * 1e-21,  # mathematically zero
    }


def test_grads_use_the_models_largest_gradient_as_scale():
    want = _grads()
    noise = {n: g + torch.randn_like(g) * 1e-15 for n, g in want.items()}  # float64 rounding of ~1e-3 values
    assert_grads_close(noise, want)  # the zero gradient's noise is not compared to its own ~1e-21 scale
    broken = {n: g.clone() for n, g in want.items()}
    broken["weight"][0, 0] *= 1 + 1e-3
    with pytest.raises(AssertionError, match="grad weight"):
        assert_grads_close(broken, want)
    broken = {n: g.clone() for n, g in want.items()}
    broken["key.bias"] += 1e-8  # a real (if small) gradient where there must be none
    with pytest.raises(AssertionError, match="grad key.bias"):
        assert_grads_close(broken, want)
    with pytest.raises(AssertionError, match="parameters differ"):
        assert_grads_close({"weight": want["weight"]}, want)


def test_spearman_tolerance_covers_swapped_near_ties_only():
    from scipy.stats import spearmanr

    rng = np.random.RandomState(0)
    n = 500
    gold = rng.uniform(0, 5, n)
    scores = (gold + rng.normal(0, 1.5, n)).astype(np.float32) / 8  # a noisy "model", spaced >> float32 eps
    scores[1] = scores[0] + 1e-6  # one near tie that rounding could swap
    rho = spearmanr(scores, gold)[0]
    tol = spearman_rounding_tolerance(scores, gold)
    assert 0 < tol < 1e-3
    swapped = scores.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # what another summation order may do
    assert abs(spearmanr(swapped, gold)[0] - rho) <= tol
    wrong = scores.copy()
    top, bottom = int(np.argmax(scores)), int(np.argmin(scores))
    wrong[[top, bottom]] = wrong[[bottom, top]]  # the best and the worst pair exchanged: a real error
    assert abs(spearmanr(wrong, gold)[0] - rho) > tol
    spread = np.linspace(0, 1, n)  # no near ties: only the float64 slack remains
    assert spearman_rounding_tolerance(spread, gold) < 1e-11
