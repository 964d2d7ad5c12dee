"""Sequence verifiers behind one interface: exact losslessness by enumeration, exact E|Y| against
simulation, the order-statistic law, reductions to block verification, and negative controls that
the exact tier must detect (docs/theory/sequence_verifiers.md)."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import assert_law

from ot_coupling import SEQUENCE_VERIFIERS, SelectionRule, SelectThenBlockVerify, get_sequence_verifier
from ot_coupling.sequence import complete_law, draft_tree, target_law
from ot_coupling.sequence.lexmax import BlendRule, GBVRule, blend_weight, strict_ranks
from ot_coupling.sequence.traversal import TraversalVerifier

NAMES = ("bv", "spectr", "specinfer", "gbv", "traversal", "blend")
#: (V, L, k) shapes small enough for the V^(k L) enumeration of the tree verifiers
SHAPES = ((2, 1, 2), (2, 2, 2), (2, 3, 2), (2, 2, 3), (3, 1, 3), (3, 2, 2), (4, 1, 3), (4, 2, 2),
          (2, 3, 3), (3, 3, 2), (3, 2, 3), (4, 1, 2), (3, 1, 1), (4, 3, 1))


def tree_model(V: int, seed: int, zeros: float = 0.3, concentration: float = 0.7, base=None, mix=None):
    """Random conditional model ``prefix -> distribution``: an independent Dirichlet row per prefix
    (memoised), with an exact zero planted with probability ``zeros``; ``base``/``mix`` mixes in
    another model's row (``mix * row + (1 - mix) * base(prefix)``)."""
    rng = np.random.default_rng(seed)
    table: dict[tuple, np.ndarray] = {}

    def model(ctx: tuple) -> np.ndarray:
        ctx = tuple(ctx)
        if ctx not in table:
            d = rng.dirichlet(np.full(V, concentration))
            if base is not None:
                d = mix * d + (1 - mix) * base(ctx)
            if rng.random() < zeros:
                d[rng.integers(V)] = 0.0
            table[ctx] = d / d.sum()
        return table[ctx]

    return model


def random_case(i: int):
    """Case ``i``: a shape from :data:`SHAPES` and a (target, draft) pair of varied kind."""
    V, L, k = SHAPES[i % len(SHAPES)]
    kind = (i // len(SHAPES)) % 4
    target = tree_model(V, 1000 + i, zeros=0.3)
    if kind == 0:
        draft = tree_model(V, 2000 + i, zeros=0.3)
    elif kind == 1:
        draft = tree_model(V, 2000 + i, zeros=0.2, base=target, mix=0.5)
    elif kind == 2:
        draft = target  # p == q: nothing to gain, everything accepted
    else:
        draft = tree_model(V, 2000 + i, zeros=0.0, concentration=0.2)
    return target, draft, V, L, k


def law_error(verifier, target, draft, k, L) -> float:
    law = verifier.output_law(target, draft, k, L)
    assert all(w >= -1e-15 for w in law.values())
    assert all(1 <= len(s) <= L + 1 for s in law)
    return float(np.abs(complete_law(target, law, L + 1) - target_law(target, L + 1)).max())


@pytest.mark.parametrize("name", NAMES)
def test_exact_tier_lossless_on_100_cases(name):
    v = get_sequence_verifier(name)
    worst = 0.0
    for i in range(100):
        target, draft, V, L, k = random_case(i)
        worst = max(worst, law_error(v, target, draft, k, L))
    assert worst < 1e-12, worst


@pytest.mark.parametrize("name", NAMES)
def test_conditional_law_sums_to_one_and_matches_verify(name):
    v = get_sequence_verifier(name)
    target, draft, V, L, k = random_case(5)  # (3, 2, 2)
    rng = np.random.default_rng(7)
    drafts = draft_tree(draft, k, L, rng)
    cond = v.conditional_law(target, draft, drafts)
    assert sum(cond.values()) == pytest.approx(1.0, abs=1e-12)
    keys = list(cond)
    index = {s: j for j, s in enumerate(keys)}
    samples = [index.get(v.verify(target, draft, drafts, rng), len(keys)) for _ in range(1500)]
    assert_law(samples, np.array([cond[s] for s in keys] + [0.0]))


@pytest.mark.parametrize("name", NAMES)
def test_expected_length_matches_simulation(name):
    """Exact E|Y| within 4 standard errors of the mean over simulated rounds (drafts and coins)."""
    v = get_sequence_verifier(name)
    V, L, k = 3, 2, 2
    target = tree_model(V, 11, zeros=0.2)
    draft = tree_model(V, 12, zeros=0.1, base=target, mix=0.5)
    law = v.output_law(target, draft, k, L)
    mean = sum(w * len(s) for s, w in law.items())
    var = sum(w * len(s) ** 2 for s, w in law.items()) - mean ** 2
    assert mean == pytest.approx(v.expected_length(target, draft, k, L), abs=1e-12)
    rng = np.random.default_rng(13)
    n = 3000
    lengths = np.array([len(v.sample(target, draft, k, L, rng)[0]) for _ in range(n)])
    assert abs(lengths.mean() - mean) <= 4 * np.sqrt(var / n)


def test_k1_reductions_to_block_verification():
    """GBV, traversal and the look-ahead rule with one path are block verification (1e-12)."""
    bv = get_sequence_verifier("bv")
    for i in range(12):
        target, draft, V, L, _ = random_case(i)
        ref = bv.output_law(target, draft, 1, L)
        for name in ("gbv", "traversal", "blend"):
            law = get_sequence_verifier(name).output_law(target, draft, 1, L)
            keys = set(ref) | set(law)
            assert max(abs(ref.get(s, 0.0) - law.get(s, 0.0)) for s in keys) < 1e-12, name


@pytest.mark.parametrize("rule", [GBVRule(), BlendRule(), BlendRule(lam=0.3)], ids=["gbv", "blend", "blend-0.3"])
def test_closed_form_selected_law_equals_enumeration(rule):
    """The order-statistic law (and its blend) in closed form equals the law of the selected path
    computed by brute force over all draft tuples (SelectionRule's default)."""
    for i in (1, 5, 8, 10, 22, 36):
        target, draft, V, L, k = random_case(i)
        closed = rule.selected_law(target, draft, k, L)
        brute = SelectionRule.selected_law(rule, target, draft, k, L)
        for path, _ in _positive_paths(closed, V, L):
            for t in range(L):
                assert np.abs(closed(path[:t]) - brute(path[:t])).max() < 1e-12


def test_blend_weight_maximises_root_overlap():
    rng = np.random.default_rng(3)
    for _ in range(50):
        V = int(rng.integers(2, 7))
        p, q = rng.dirichlet(np.ones(V)), rng.dirichlet(np.ones(V))
        g = q * rng.uniform(0, 3, V)
        g /= g.sum()
        lam = blend_weight(p, g, q)
        grid = np.linspace(0, 1, 2001)
        vals = [np.minimum(p, q + x * (g - q)).sum() for x in grid]
        assert np.minimum(p, q + lam * (g - q)).sum() >= max(vals) - 1e-12
        assert 0.0 <= lam <= 1.0


def _positive_paths(law, V, L):
    from itertools import product
    for s in product(range(V), repeat=L):
        w = 1.0
        for t in range(L):
            w *= float(law(s[:t])[s[t]])
            if w == 0.0:
                break
        if w > 0:
            yield s, w


# ----------------------------------------------------------------------------- negative controls
class _TraversalTokenOrder(TraversalVerifier):
    _sibling_order = "token"


class _TraversalNoRenormalise(TraversalVerifier):
    _renormalise = False


class _GBVPlainLaw(GBVRule):
    """Selects GBV's path but block-verifies it against the plain draft law."""

    closed_form = False  # the output law must enumerate the drafts: the law given is not X^J's

    def selected_law(self, target, draft, k, L, prefix=()):
        return lambda u: draft(tuple(prefix) + tuple(u))


class _GBVClippedMismatched(GBVRule):
    """Older variant: clipped ratio min(1, p/q), ties broken one way to select, the other way in the law."""

    closed_form = False

    def ranks(self, p, q, state):
        return strict_ranks(np.minimum(1.0, super().key(p, q, state)), tiebreak_ascending=False)

    def selection_ranks(self, p, q, state):
        return strict_ranks(np.minimum(1.0, super().key(p, q, state)), tiebreak_ascending=True)


@pytest.mark.parametrize("broken", [_TraversalTokenOrder(), _TraversalNoRenormalise(),
                                    SelectThenBlockVerify(_GBVPlainLaw()),
                                    SelectThenBlockVerify(_GBVClippedMismatched())],
                         ids=["traversal-token-order", "traversal-no-renormalise", "gbv-plain-law",
                              "gbv-clipped-mismatched"])
def test_negative_controls_are_detected(broken):
    worst = 0.0
    for i in range(40):
        V, L, k = ((3, 2, 2), (3, 2, 3), (2, 3, 2), (4, 2, 2))[i % 4]
        target = tree_model(V, 3000 + i, zeros=0.0, concentration=0.5)
        draft = tree_model(V, 4000 + i, zeros=0.0, concentration=0.5)
        worst = max(worst, law_error(broken, target, draft, k, L))
        if worst > 1e-3:
            break
    assert worst > 1e-3  # biased: the exact tier catches it


# ----------------------------------------------------------------------------- interface
def test_registry_and_errors():
    assert set(NAMES) <= set(SEQUENCE_VERIFIERS)
    with pytest.raises(ValueError, match="unknown sequence verifier"):
        get_sequence_verifier("nope")
    target, draft, V, L, k = random_case(0)
    with pytest.raises(ValueError, match="enumeration"):
        get_sequence_verifier("traversal").output_law(tree_model(8, 0), tree_model(8, 1), 3, 3)
    with pytest.raises(ValueError, match="rule"):
        SelectThenBlockVerify("gbv")
    with pytest.raises(ValueError, match="outside"):
        get_sequence_verifier("gbv").verify(target, draft, np.full((2, 1), 9))


def test_gbv_attains_more_than_bv_on_average_and_tree_is_consistent():
    """Sanity of the benchmark setting: averaged over cases, using k paths helps every multi-path method."""
    gain = {n: 0.0 for n in ("bv", "gbv", "traversal", "spectr", "blend")}
    for i in range(6):
        target = tree_model(3, 5000 + i, zeros=0.0, concentration=1.0)
        draft = tree_model(3, 6000 + i, zeros=0.0, base=target, mix=0.5)
        for n in gain:
            gain[n] += get_sequence_verifier(n).expected_length(target, draft, 2, 2)
    for n in ("gbv", "traversal", "spectr", "blend"):
        assert gain[n] > gain["bv"]


# ----------------------------------------------------------------------------- published table
def note_pair(V: int, seed: int):
    """The random Markov pairs of the reference table: ``rng = default_rng(seed)``, target rows
    ``Dirichlet(1)`` (``V x V``), draft rows ``0.5 Dirichlet(1) + 0.5 target``, context token 0."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(V), size=V)
    Q = 0.5 * rng.dirichlet(np.ones(V), size=V) + 0.5 * P
    return (lambda u: P[u[-1] if u else 0]), (lambda u: Q[u[-1] if u else 0])


#: (V, L, k, seed): BV, SpecTr, SpecInfer, GBV, TV (exact E|Y|, rounded to 4 decimals)
TABLE = {
    (3, 2, 2, 0): (2.5872, 2.7606, 2.7014, 2.6515, 2.7288),
    (3, 2, 2, 1): (2.2271, 2.5249, 2.4664, 2.7136, 2.5195),
    (3, 2, 2, 2): (2.4795, 2.6937, 2.6137, 2.8570, 2.6494),
    (3, 3, 2, 0): (3.1347, 3.3658, 3.2803, 3.2541, 3.3549),
    (3, 3, 2, 1): (2.6849, 3.0409, 2.9565, 3.3650, 3.0915),
    (3, 3, 2, 2): (3.1518, 3.4042, 3.2825, 3.6953, 3.4013),
    (4, 2, 3, 0): (2.3184, 2.6928, 2.5860, 2.7210, 2.6284),
    (4, 2, 3, 1): (2.2734, 2.7514, 2.6759, 2.7923, 2.6987),
    (4, 2, 3, 2): (2.2063, 2.6771, 2.6031, 2.6218, 2.6576),
}


@pytest.mark.parametrize("case", list(TABLE), ids=lambda c: "-".join(map(str, c)))
def test_reference_table_values(case):
    V, L, k, seed = case
    target, draft = note_pair(V, seed)
    names = ("bv", "spectr", "specinfer", "gbv", "traversal")
    if V == 4 and seed > 0:
        names = ("bv", "gbv")  # the 4^6-tuple tree enumerations are checked once (seed 0)
    for name in names:
        value = get_sequence_verifier(name).expected_length(target, draft, k, L)
        assert abs(value - TABLE[case][("bv", "spectr", "specinfer", "gbv", "traversal").index(name)]) < 1e-4, name
