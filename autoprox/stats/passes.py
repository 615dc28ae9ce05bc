"""The statistics passes: one registry, one record per pass.

A pass computes some statistic *families* of one arch from the proxy batch. Each is
registered once, with everything the engine needs to know about it:

| pass        | families                                    | what                                   |
|-------------|---------------------------------------------|----------------------------------------|
| base        | weight(_grad), virtual_grad, activations and | one train-mode forward+backward in     |
|             | their gradients, naswot_kernel,              | ``grad_groups`` chunks (ZiCo's splits),|
|             | input_grad_corr, fisher, grad_snr; per layer:| then a SynFlow-style pass (see         |
|             | weight_norm, snip_saliency, weight_grad_norm,| ``collect``)                           |
|             | synflow_saliency, dss_nuclear, zico_snr      |                                        |
| hessian     | hessian_grad, grasp_saliency                 | GraSP's Hg (double backward)           |
| teacher     | teacher_gap                                  | TVT's gap to a ConvNet teacher         |
| jacobian    | logit_jacobian_corr, epe_nas                 | d sum(logits)/d image: jacob_cov's     |
|             |                                              | correlation, EPE-NAS's score           |
| features    | per layer: token_entropy, token_min_eig,     | one eval-mode forward, no gradient     |
|             | meco, norm_stable_rank, weight_l1_l2;        | (``features``)                         |
|             | swap_patterns                                |                                        |
| zen         | zen_score                                    | Zen-score on a N(0, 1) copy (``zen``)  |
| ntk         | per layer: ntk_gram; ntk_cond                | TE-NAS's per-image gradient Gram       |
|             |                                              | (NTK), train mode (``ntk``)            |
| blocks      | per block feature: block_expressivity,       | AZ-NAS's (``block_spectra``), eval     |
|             | block_trainability                           | mode, chunked                          |

Weight-shaped families (``weight``, ``weight_grad``, ``virtual_grad``, ``hessian_grad``,
``grad_snr``) keep ``weight_rows`` evenly spaced output units of each layer, as activations keep
a subsample; the per-layer families (one number per weight layer) are exact reductions over
every element, which is what the zoo reads: one arch's cache stays small whatever its size.

Passes that run the same forward (and backward) can share it: ``register_joint`` names them and
one run yielding all their families, each with the value its own pass gives (tested); ``run_groups``
plans a request into single passes and such joint runs.

A pass's cache key holds its ``version`` and the ``StatsConfig`` ``fields`` it reads, never
a hash of source code: refactoring keeps caches valid. Whoever changes a pass's values bumps
its version; ``tests/test_passes_golden.py`` fails until they do (regenerate the golden file
with ``python tests/golden.py``). Adding a pass = one ``register_pass`` call here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from primitives.registry import Registry
from autoprox.stats import block_spectra, collect, features, jacobian, ntk, teacher, zen

RunFn = Callable[..., tuple[dict, dict, dict]]


@dataclass(frozen=True)
class Pass:
    """One statistics pass: ``run(model, images, labels, seed, settings, families[, teacher])``."""

    name: str
    families: tuple[str, ...]
    version: int
    run: RunFn
    fields: tuple[str, ...] = ()   # StatsConfig fields its values depend on (cache key)
    matrix: tuple[str, ...] = ()   # families holding one (B x B) matrix per arch
    scalar: tuple[str, ...] = ()   # families holding one number per arch
    needs: tuple[str, ...] = ()    # resources beyond model and batch: "teacher"
    last: bool = False             # alters the model's weights: runs after every other pass

    @property
    def single(self) -> tuple[str, ...]:
        return self.matrix + self.scalar


_PASSES: Registry[Pass] = Registry("statistics pass")


def register_pass(name: str, *, families: Iterable[str], version: int, fields: Iterable[str] = (),
                  matrix: Iterable[str] = (), scalar: Iterable[str] = (), needs: Iterable[str] = (),
                  last: bool = False) -> Callable[[RunFn], RunFn]:
    """Decorator registering ``run`` as statistics pass ``name``; a family has one pass."""
    def deco(run: RunFn) -> RunFn:
        p = Pass(name, tuple(families), int(version), run, tuple(fields), tuple(matrix), tuple(scalar),
                 tuple(needs), last)
        taken = set(p.families) & set(all_families())
        if taken:
            raise ValueError(f"pass {name!r}: families {sorted(taken)} belong to another pass")
        if not set(p.single) <= set(p.families) or p.version < 1:
            raise ValueError(f"pass {name!r}: matrix/scalar families must be its own; version >= 1")
        _PASSES.add(name, p)
        _TABLES.clear()
        return run
    return deco


_TABLES: dict[str, tuple[str, ...]] = {}  # derived family tables, rebuilt after a registration


def _table(kind: str) -> tuple[str, ...]:
    if kind not in _TABLES:
        _TABLES[kind] = tuple(f for n in _PASSES.order() for f in getattr(_PASSES.get(n), kind))
    return _TABLES[kind]


@dataclass(frozen=True)
class Joint:
    """Passes sharing one forward: ``run`` (a pass's signature) yields the families of every one."""

    passes: tuple[str, ...]
    run: RunFn


_JOINTS: list[Joint] = []


def register_joint(*names: str) -> Callable[[RunFn], RunFn]:
    """Decorator registering ``run`` as the shared run of passes ``names`` (no teacher, none ``last``)."""
    def deco(run: RunFn) -> RunFn:
        ps = [get_pass(n) for n in names]
        if len(ps) < 2 or any(p.needs or p.last for p in ps) or any(set(names) & set(j.passes) for j in _JOINTS):
            raise ValueError(f"joint {names}: two or more passes, no teacher, none last, each in one joint")
        _JOINTS.append(Joint(tuple(names), run))
        return run
    return deco


def run_groups(names: Iterable[str], families: Iterable[str] | None = None) -> list[tuple[tuple[str, ...], RunFn]]:
    """(passes, run) in run order for the passes ``names``: a joint run where all of its passes are
    named (and, with ``families``, each yields a wanted family), else each pass's own run."""
    wanted = None if families is None else set(families)
    todo = [n for n in list_passes() if n in set(names)]
    groups: list[tuple[tuple[str, ...], RunFn]] = []
    for name in todo:
        if any(name in g for g, _ in groups):
            continue
        joint = next((j for j in _JOINTS if name in j.passes and set(j.passes) <= set(todo)
                      and (wanted is None or all(wanted & set(get_pass(n).families) for n in j.passes))), None)
        groups.append((joint.passes, joint.run) if joint else ((name,), get_pass(name).run))
    return groups


def get_pass(name: str) -> Pass:
    return _PASSES.get(name)


def list_passes() -> list[str]:
    """Pass names in run order (registration order, ``last`` passes at the end)."""
    items = [_PASSES.get(n) for n in _PASSES.order()]
    return [p.name for p in sorted(items, key=lambda p: p.last)]


def all_families() -> tuple[str, ...]:
    return _table("families")


def single_families() -> tuple[str, ...]:
    """Families with one value per arch (not per layer)."""
    return _table("single")


def scalar_families() -> tuple[str, ...]:
    return _table("scalar")


def matrix_families() -> tuple[str, ...]:
    return _table("matrix")


def pass_of(family: str) -> Pass:
    for n in _PASSES.order():
        if family in _PASSES.get(n).families:
            return _PASSES.get(n)
    raise KeyError(f"unknown statistic {family!r}; known: {', '.join(all_families())}")


def passes_for(families: Iterable[str]) -> list[str]:
    """The passes (in run order) that yield ``families``; an unknown family raises."""
    fams = set(families)
    unknown = fams - set(all_families())
    if unknown:
        raise KeyError(f"unknown statistic(s) {sorted(unknown)}; known: {', '.join(all_families())}")
    return [n for n in list_passes() if fams & set(get_pass(n).families)]


def families_of_passes(names: Iterable[str]) -> tuple[str, ...]:
    """Every family the named passes yield."""
    return tuple(f for n in names for f in get_pass(n).families)


# ---------------------------------------------------------------- the built-in passes
BASE_FAMILIES = ("weight", "weight_grad", "virtual_grad", "linear_input", "linear_input_grad", "gelu_input",
                 "gelu_input_grad", "norm_output", "norm_output_grad", "attention", "attention_grad",
                 "naswot_kernel", "input_grad_corr", "fisher", "weight_norm", "snip_saliency", "weight_grad_norm",
                 "synflow_saliency", "dss_nuclear", "grad_snr", "zico_snr")

register_pass("hessian", families=("hessian_grad", "grasp_saliency"), version=3,
              fields=("drop_path", "weight_rows", "grad_groups"))(collect.hessian_pass)
register_pass("teacher", families=("teacher_gap",), version=1, fields=("drop_path",), scalar=("teacher_gap",),
              needs=("teacher",))(teacher.teacher_pass)
register_pass("jacobian", families=("logit_jacobian_corr", "epe_nas"), version=2, fields=("drop_path",),
              matrix=("logit_jacobian_corr",), scalar=("epe_nas",))(jacobian.jacobian_pass)
register_pass("features", families=features.FEATURE_FAMILIES, version=2,
              scalar=("swap_patterns",))(features.features_pass)
register_pass("zen", families=("zen_score",), version=1, fields=("drop_path",), scalar=("zen_score",))(zen.zen_pass)
register_pass("ntk", families=("ntk_gram", "ntk_cond"), version=1, fields=("drop_path",),
              scalar=("ntk_cond",))(ntk.ntk_pass)
register_joint("jacobian", "ntk")(ntk.jacobian_ntk_pass)
register_pass("blocks", families=("block_expressivity", "block_trainability"), version=1,
              fields=("grad_groups",))(block_spectra.blocks_pass)
register_pass("base", families=BASE_FAMILIES, version=2,
              fields=("act_samples", "act_tokens", "drop_path", "weight_rows", "grad_groups"),
              matrix=("naswot_kernel", "input_grad_corr"), last=True)(collect.base_pass)
