"""Tests of the primitive op library: robustness over the whole registry, then known values."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from primitives import ALIASES, BINARY_ORDER, UNARY_ORDER, get_op, list_ops, register_op


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _nan_tensor() -> torch.Tensor:
    return torch.tensor([[1.0, math.nan], [0.0, -2.0]])


TENSORS = {
    "random": lambda: torch.randn(4, 5, generator=_gen()),
    "square": lambda: torch.randn(5, 5, generator=_gen()),
    "float64": lambda: torch.randn(3, 3, generator=_gen(), dtype=torch.float64),
    "zeros": lambda: torch.zeros(4, 5),
    "negatives": lambda: -torch.rand(4, 5, generator=_gen()) - 0.1,
    "empty": lambda: torch.empty(0),
    "empty_2d": lambda: torch.empty(0, 3),
    "scalar": lambda: torch.tensor(0.7),
    "zero_scalar": lambda: torch.tensor(0.0),
    "nan": _nan_tensor,
}
PAIRS = {
    "same_shape": ("random", "negatives"),
    "broadcast": ("random", "scalar"),
    "mismatched": ("random", "square"),
    "mixed_dtype": ("square", "float64"),
    "empty_and_tensor": ("empty", "random"),
    "both_empty": ("empty", "empty_2d"),
    "zeros": ("zeros", "zeros"),
    "scalars": ("scalar", "zero_scalar"),
    "nan": ("nan", "nan"),
}
KINDS = ["patch", "attn_qkv", "attn_proj", "mlp_fc1", "mlp_fc2", "norm", "head", "attn_map"]
LAYERS = {
    "random": lambda: (torch.randn(len(KINDS), generator=_gen()), KINDS),
    "empty": lambda: (torch.empty(0), []),
    "scalar": lambda: (torch.tensor(3.0), ["attn_qkv"]),
    "nan": lambda: (torch.tensor([math.nan, 1.0]), ["mlp_fc1", "attn_proj"]),
}


def _cases(name: str) -> list[str]:
    inputs = {"unary": TENSORS, "reduce": TENSORS, "binary": PAIRS, "aggregate": LAYERS}
    return list(inputs[get_op(name).group])


def _run(name: str, case: str) -> tuple[torch.Tensor, torch.Size]:
    """Output of op ``name`` on input ``case`` and the shape a "tensor" result must have."""
    op = get_op(name)
    if op.group == "binary":
        a, b = (TENSORS[k]() for k in PAIRS[case])
        try:
            shape = torch.broadcast_shapes(a.shape, b.shape)
        except RuntimeError:
            shape = torch.Size([])
        return op.fn(a, b), shape
    if op.group == "aggregate":
        return op.fn(*LAYERS[case]()), torch.Size([])
    x = TENSORS[case]()
    return op.fn(x), x.shape


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name", list_ops())
def test_op_never_raises_and_returns_declared_kind(name: str) -> None:
    op = get_op(name)
    for case in _cases(name):
        out, shape = _run(name, case)
        assert isinstance(out, torch.Tensor) and out.is_floating_point(), case
        if op.out_kind == "scalar":
            assert out.dim() == 0, case
        elif op.out_kind == "vector":
            assert out.dim() == 1, case
        elif name != "matmul":  # matmul's shape follows the 2-D views; checked below
            assert out.shape == shape, case


@pytest.mark.parametrize("name", list_ops())
def test_op_is_deterministic_and_leaves_global_rng_alone(name: str) -> None:
    case = {"binary": "same_shape", "aggregate": "random"}.get(get_op(name).group, "square")
    state = torch.random.get_rng_state()
    first, _ = _run(name, case)
    second, _ = _run(name, case)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.allclose(first, second, equal_nan=True)


@pytest.mark.parametrize("name", list_ops())
def test_templates_format(name: str) -> None:
    op = get_op(name)
    args = ["xa", "yb"][: op.arity]
    for template in (op.text, op.latex):
        filled = template.format(*args)
        assert all(arg in filled for arg in args)
    assert op.doc and "\n" not in op.doc


# registry ------------------------------------------------------------------

def test_unary_order_is_the_published_one() -> None:
    assert UNARY_ORDER == (
        "log", "abslog", "abs", "square", "exp", "standardize", "relu", "invert",
        "frobenius_norm", "normalized_sum", "l1_norm", "softmax", "sigmoid", "logsoftmax",
        "sqrt", "negate", "min_max_normalize", "to_mean_scalar", "to_std_scalar", "no_op",
    )
    assert all(get_op(n).group == "unary" for n in UNARY_ORDER)


def test_binary_order_and_weights() -> None:
    assert [get_op(n).weight for n in BINARY_ORDER] == [0.6, 0.3, 0.05, 0.05]
    assert all(get_op(n).group == "binary" for n in BINARY_ORDER)


def test_aliases_resolve_to_registered_ops() -> None:
    assert get_op("element_wise_sqrt").name == "sqrt"
    assert get_op("element_wise_revert") is get_op(UNARY_ORDER[15])
    for alias, target in ALIASES.items():
        assert alias not in list_ops() and get_op(alias).name == target


def test_list_ops_sorted_and_grouped() -> None:
    names = list_ops()
    assert names == sorted(names) and len(names) == len(set(names))
    assert set(list_ops("aggregate")) == {
        "agg_mean", "agg_sum", "agg_max", "agg_min", "agg_sum_attn", "agg_mean_attn",
        "agg_sum_mlp", "agg_mean_mlp", "agg_sum_nonattn", "agg_mean_nonattn",
    }
    with pytest.raises(ValueError):
        list_ops("nope")


def test_duplicate_registration_raises() -> None:
    before = get_op("log")
    with pytest.raises(KeyError, match="already registered"):
        register_op("log", group="unary", arity=1, out_kind="tensor", text="{0}", latex="{0}", doc="x")(abs)
    assert get_op("log") is before


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError) as err:
        get_op("no_such_op")
    assert "no_such_op" in str(err.value) and "matmul" in str(err.value) and "agg_sum" in str(err.value)


@pytest.mark.parametrize("bad", [
    {"group": "ternary"}, {"arity": 2}, {"out_kind": "matrix"}, {"text": "f()"}, {"doc": "a\nb"},
])
def test_invalid_registration_raises_and_registers_nothing(bad: dict) -> None:
    spec = {"group": "unary", "arity": 1, "out_kind": "tensor", "text": "{0}", "latex": "{0}", "doc": "x"}
    with pytest.raises(ValueError):
        register_op("test_invalid_op", **{**spec, **bad})(abs)
    assert "test_invalid_op" not in list_ops()


def test_op_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_op("log").weight = 3.0  # type: ignore[misc]


# known values: unary ------------------------------------------------------------

def _u(name: str, *values: object) -> torch.Tensor:
    return get_op(name).fn(torch.tensor(values, dtype=torch.float64))


def test_unary_known_values() -> None:
    assert get_op("frobenius_norm").fn(torch.tensor([[3.0, 4.0]])).item() == pytest.approx(5.0)
    assert _u("min_max_normalize", 1, 2, 3).tolist() == [0.0, 0.5, 1.0]
    assert _u("min_max_normalize", 2, 2).tolist() == [0.0, 0.0]
    assert _u("sqrt", -4, 9).tolist() == [0.0, 3.0]
    assert _u("invert", 0, 2, -4).tolist() == [0.0, 0.5, -0.25]
    assert _u("standardize", 1, 2, 3).tolist() == [-1.0, 0.0, 1.0]
    assert _u("standardize", 5, 5, 5).tolist() == [0.0, 0.0, 0.0]
    assert _u("abslog", 0, -math.e).tolist() == pytest.approx([0.0, 1.0])
    assert _u("square", -3).tolist() == [9.0]
    assert _u("negate", 2, -1).tolist() == [-2.0, 1.0]
    assert _u("l1_norm", 1, -3).item() == pytest.approx(2.0)
    assert _u("normalized_sum", 1, 2, 3, 6).item() == pytest.approx(3.0)
    assert _u("to_std_scalar", 1, 2, 3).item() == pytest.approx(1.0)
    assert math.isnan(_u("log", -1).item()) and _u("log", 0).item() == -math.inf
    assert _u("add_k", 0, -1e-5, 2).tolist() == pytest.approx([1e-5, 0.0, 2.00001], abs=1e-12)
    assert get_op("add_k").weight == 0.0  # never sampled by evolution


def test_softmax_and_logsoftmax_use_the_flattened_tensor() -> None:
    x = torch.randn(3, 4, generator=_gen())
    p = get_op("softmax").fn(x)
    assert p.shape == x.shape and p.sum().item() == pytest.approx(1.0)
    assert torch.allclose(get_op("logsoftmax").fn(x).exp(), p)
    assert torch.allclose(get_op("softmax").fn(torch.zeros(2, 2)), torch.full((2, 2), 0.25))


def test_eigvalsh() -> None:
    assert get_op("eigvalsh").fn(torch.diag(torch.tensor([3.0, 1.0]))).tolist() == pytest.approx([1.0, 3.0])
    assert math.isnan(get_op("eigvalsh").fn(torch.ones(2, 3)).item())


# known values: reductions -------------------------------------------------------

def test_reduction_known_values() -> None:
    assert get_op("nuclear_norm").fn(torch.diag(torch.tensor([3.0, -4.0]))).item() == pytest.approx(7.0)
    assert get_op("logdet").fn(torch.diag(torch.tensor([2.0, -3.0]))).item() == pytest.approx(math.log(6))
    assert math.isnan(get_op("logdet").fn(torch.ones(2, 3)).item())
    assert get_op("logdet").fn(torch.zeros(2, 2)).item() == -math.inf
    assert get_op("std").fn(torch.tensor([4.0])).item() == 0.0
    assert get_op("numel").fn(torch.ones(2, 3)).item() == 6.0
    assert get_op("max").fn(torch.tensor([1.0, 7.0, -2.0])).item() == 7.0


def test_nuclear_norm_of_wide_and_tall_matrices_is_the_sum_of_singular_values() -> None:
    # a wide matrix is transposed before its SVD (the same singular values); the value must not depend
    # on the shape's orientation, alone or in a stack
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(6, 40, generator=g) * torch.logspace(0, -3, 6)[:, None]
    exact = torch.linalg.svdvals(wide.double()).sum().item()
    op = get_op("nuclear_norm")
    for m in (wide, wide.T, wide.reshape(6, 4, 10)):
        assert op.fn(m).item() == pytest.approx(exact, rel=1e-6)
    stacked = op.batched(torch.stack([wide, 2 * wide]))
    assert stacked.tolist() == pytest.approx([exact, 2 * exact], rel=1e-6)


def test_reductions_of_empty() -> None:
    empty = torch.empty(0)
    assert get_op("sum").fn(empty).item() == 0.0 and get_op("numel").fn(empty).item() == 0.0
    for name in ("mean", "std", "max", "min", "l2_norm", "nuclear_norm", "logdet"):
        assert math.isnan(get_op(name).fn(empty).item()), name


# known values: binary -----------------------------------------------------------

def _b(name: str, a: object, b: object) -> torch.Tensor:
    return get_op(name).fn(torch.tensor(a), torch.tensor(b))


def test_elementwise_broadcast_or_mean_reduce() -> None:
    out = get_op("element_wise_sum").fn(torch.ones(2, 3), torch.tensor([1.0, 2.0, 3.0]))
    assert out.tolist() == [[2.0, 3.0, 4.0]] * 2
    reduced = get_op("element_wise_sum").fn(torch.ones(2, 3), torch.full((4,), 2.0))
    assert reduced.shape == () and reduced.item() == 3.0
    assert get_op("element_wise_difference").fn(torch.ones(2, 3), torch.full((4,), 2.0)).item() == -1.0
    assert get_op("element_wise_product").fn(torch.ones(2, 3), torch.full((4,), 2.0)).item() == 2.0


def test_matmul() -> None:
    assert _b("matmul", [[1.0, 2.0]], [[3.0], [4.0]]).tolist() == [[11.0]]
    assert _b("matmul", [1.0, 2.0], [[3.0, 4.0]]).tolist() == [[3.0, 4.0], [6.0, 8.0]]
    assert _b("matmul", 2.0, [[1.0, 2.0]]).tolist() == [[2.0, 4.0]]
    mismatched = get_op("matmul").fn(torch.ones(2, 3), torch.full((2, 3), 3.0))
    assert mismatched.shape == () and mismatched.item() == 3.0


def test_comparisons_and_extrema() -> None:
    assert _b("greater", [1.0, 5.0], [3.0, 3.0]).tolist() == [0.0, 1.0]
    assert _b("less", [1.0, 5.0], [3.0, 3.0]).tolist() == [1.0, 0.0]
    assert _b("maximum", [1.0, 5.0], [3.0, 3.0]).tolist() == [3.0, 5.0]
    assert _b("minimum", [1.0, 5.0], [3.0, 3.0]).tolist() == [1.0, 3.0]


def test_distances() -> None:
    assert _b("cosine_similarity", [1.0, 0.0, 5.0], [2.0, 0.0]).item() == pytest.approx(1.0)
    assert _b("cosine_similarity", [0.0, 0.0], [1.0, 2.0]).item() == 0.0
    assert _b("kl_divergence", [1.0, 2.0], [1.0, 2.0]).item() == pytest.approx(0.0, abs=1e-7)
    p = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    q = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    assert _b("kl_divergence", [0.0, 1.0], [1.0, 0.0]).item() == pytest.approx((p * (p / q).log()).sum().item())
    assert _b("l1_distance", [1.0, 2.0, 3.0], [1.0, 0.0]).item() == 2.0
    assert _b("mse", [1.0, 2.0, 3.0], [1.0, 0.0]).item() == 2.0
    assert _b("pairwise_distance", [[0.0, 0.0], [3.0, 4.0]], [[0.0, 0.0]]).item() == pytest.approx(2.5)


# known values: aggregations -----------------------------------------------------

def _agg(name: str, values: list[float], kinds: list[str]) -> float:
    return get_op(name).fn(torch.tensor(values), kinds).item()


def test_aggregations_pick_their_kinds() -> None:
    values = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    kinds = ["patch", "attn_qkv", "attn_proj", "mlp_fc1", "head", "attn_map"]
    assert _agg("agg_sum_attn", values, kinds) == 6.0
    assert _agg("agg_mean_attn", values, kinds) == 3.0
    assert _agg("agg_sum_mlp", values, kinds) == 8.0
    assert _agg("agg_sum_nonattn", values, kinds) == 56.0
    assert _agg("agg_mean_nonattn", values, kinds) == pytest.approx(56.0 / 3)
    assert [_agg(f"agg_{r}", values, kinds) for r in ("sum", "max", "min")] == [63.0, 32.0, 1.0]


def test_aggregations_of_empty_selection() -> None:
    assert _agg("agg_sum_attn", [1.0], ["mlp_fc1"]) == 0.0
    assert math.isnan(_agg("agg_mean_attn", [1.0], ["mlp_fc1"]))


def test_aggregation_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        get_op("agg_sum").fn(torch.ones(3), ["head"])
