import math

import networkx as nx
import pytest
import torch

from autoprox.proxy.genotype import from_indices, parse_genotype, to_genotype
from autoprox.proxy.graph import (GraphError, GraphProxy, evaluate, graph_from_mapping, graph_to_mapping,
                            parse, proxy_hash, score_population, to_expr, to_graph)
from autoprox.stats.base import ArchStats

PAPER = "INPUT:(t2, t4g)TREE:(min_max_normalize|frobenius_norm|sigmoid|element_wise_sqrt)BINARY:(element_wise_sum)"


def known_stats() -> ArchStats:
    """Two layers with hand-checkable values."""
    x = [torch.tensor([[0.0, 1.0], [2.0, 4.0]]), torch.tensor([[1.0, 1.0], [1.0, 3.0]])]
    g = [torch.zeros(2, 2), torch.full((3,), 100.0)]
    return ArchStats(tensors={"linear_input": x, "norm_output_grad": g, "weight": x},
                     kinds={"linear_input": ["attn_qkv", "mlp_fc1"], "norm_output_grad": ["norm", "norm"],
                            "weight": ["attn_qkv", "mlp_fc1"]},
                     scalars={"num_params": 7.0, "flops": 3.0})


def test_paper_proxy_known_value():
    e = parse_genotype(PAPER)
    s = known_stats()
    # layer 1: minmax([0,1,2,4]) = [0,.25,.5,1] -> F = sqrt(1.3125); sqrt(sigmoid(0)) = sqrt(.5)
    # layer 2: minmax([1,1,1,3]) = [0,0,0,1] -> F = 1; sqrt(sigmoid(100)) = 1
    want = ((math.sqrt(1.3125) + math.sqrt(0.5)) + (1 + 1)) / 2
    assert GraphProxy("p", e).score(s) == pytest.approx(want, rel=1e-6)


def test_genotype_roundtrip_and_index_form():
    e = parse_genotype(PAPER)
    assert to_genotype(e) == PAPER
    assert str(e) == ("agg_mean(element_wise_sum(to_mean_scalar(frobenius_norm(min_max_normalize(linear_input))),"
                      "to_mean_scalar(sqrt(sigmoid(norm_output_grad)))))")
    e2 = from_indices(["t3g", "t2"], [[5, 10], [14, 6], 0])
    assert "standardize(weight_grad)" in str(e2) and "relu(sqrt(linear_input))" in str(e2)
    with pytest.raises(GraphError, match="bad Auto-Prox op indices"):
        from_indices(["t3g", "t2"], [[5, 99], [14, 6], 0])
    with pytest.raises(GraphError, match="not an Auto-Prox genotype"):
        parse_genotype("INPUT:(t2)")


def test_graph_roundtrip_keeps_hash():
    e = parse_genotype(PAPER)
    g = to_graph(e)
    assert to_expr(g) == e
    assert proxy_hash(to_expr(graph_from_mapping(graph_to_mapping(g)))) == proxy_hash(e)


def test_commutative_operands_give_one_hash():
    a = parse("agg_sum(element_wise_sum(abs(weight), square(weight)))")
    b = parse("agg_sum(element_wise_sum(square(weight), abs(weight)))")
    c = parse("agg_sum(element_wise_difference(square(weight), abs(weight)))")
    d = parse("agg_sum(element_wise_difference(abs(weight), square(weight)))")
    assert proxy_hash(a) == proxy_hash(b) and proxy_hash(c) != proxy_hash(d)


def test_per_kind_aggregation_and_scalar_leaves():
    s = known_stats()
    assert GraphProxy.from_text("a", "agg_sum_attn(sum(weight))").score(s) == pytest.approx(7.0)
    assert GraphProxy.from_text("m", "agg_sum_mlp(sum(weight))").score(s) == pytest.approx(6.0)
    p = GraphProxy.from_text("p", "element_wise_product(num_params, flops)")
    assert p.score(s) == 21.0 and p.families == frozenset()


def test_population_shares_subexpressions():
    s = known_stats()
    calls = []
    from autoprox.proxy import graph as G
    orig = G.apply_op
    G.apply_op = lambda fn, agg, vals: calls.append(fn.__name__) or orig(fn, agg, vals)
    try:
        ps = [GraphProxy.from_text(str(i), t) for i, t in enumerate(
            ["agg_mean(frobenius_norm(min_max_normalize(linear_input)))",
             "agg_sum(frobenius_norm(min_max_normalize(linear_input)))"])]
        assert score_population(ps, s) == pytest.approx([1.0727, 2.1456], abs=1e-3)
    finally:
        G.apply_op = orig
    assert calls.count("min_max_normalize") == 1 and len(calls) == 4  # shared minmax+norm, two aggregations


def test_population_memo_frees_values_after_their_last_use():
    """Scores equal a plain memo's; each value leaves the memo once its last consumer has read it."""
    from autoprox.proxy.graph import SharedMemo
    s = known_stats()
    texts = ["agg_mean(frobenius_norm(min_max_normalize(linear_input)))",
             "agg_sum(frobenius_norm(min_max_normalize(linear_input)))",
             "agg_max(frobenius_norm(min_max_normalize(linear_input)))", "agg_sum(sum(weight))",
             "agg_sum(sum(weight))"]
    ps = [GraphProxy.from_text(str(i), t) for i, t in enumerate(texts)]
    plain: dict = {}
    assert score_population(ps, s) == [p.score(s, plain) for p in ps]
    memo = SharedMemo([p.expr for p in ps])
    assert memo.uses["frobenius_norm(min_max_normalize(linear_input))"] == 3  # three parents
    assert memo.uses["agg_sum(sum(weight))"] == 2  # the same root twice
    sizes = []
    for p in ps:
        evaluate(p.expr, s, memo)
        memo.release([str(p.expr)])
        sizes.append(sorted(memo))
    assert sizes[0] == ["frobenius_norm(min_max_normalize(linear_input))"]  # still wanted by 1 and 2
    assert sizes[2] == [] and sizes[3] == ["agg_sum(sum(weight))"] and sizes[4] == []
    assert len(plain) == 9  # the plain memo keeps every intermediate


@pytest.mark.parametrize("text,msg", [
    ("agg_sum(nope(weight))", "unknown op"), ("agg_sum(abs(t9))", "unknown statistic"),
    ("abs(weight)", "per-layer"), ("agg_sum(num_params)", "needs per-layer input"),
    ("agg_sum(abs(weight, weight))", "takes 1 input"), ("agg_sum(abs(weight)", "expected"),
    ("agg_sum(abs(weight)) x", "trailing"),
])
def test_bad_expressions(text, msg):
    with pytest.raises(GraphError, match=msg):
        parse(text)


def test_bad_graphs():
    g = nx.DiGraph(output="b")
    g.add_node("a", op="abs")
    g.add_node("b", op="abs")
    g.add_edge("a", "b", pos=0)
    g.add_edge("b", "a", pos=0)
    with pytest.raises(GraphError, match="cycle"):
        to_expr(g)
    g = to_graph(parse("agg_sum(abs(weight))"))
    g.add_node("lost", stat="weight")
    with pytest.raises(GraphError, match="dangling"):
        to_expr(g)
    with pytest.raises(GraphError, match="no valid 'output'"):
        to_expr(nx.DiGraph())
    with pytest.raises(GraphError, match="malformed"):
        graph_from_mapping({"nodes": [{"op": "abs"}]})


def test_missing_statistic_raises_clearly_but_bad_maths_is_nan():
    from autoprox.proxy.graph import score_population
    s = ArchStats(scalars={"num_params": 1.0})
    with pytest.raises(KeyError, match="statistic 'weight' not available"):
        score_population([GraphProxy.from_text("x", "agg_sum(abs(weight))")], s)
    assert math.isnan(score_population([GraphProxy.from_text("y", "log(negate(num_params))")], s)[0])
