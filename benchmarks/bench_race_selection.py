"""Same-run before/after timing of the race and selection-law kernels: this tree against ``--base``.

Measures the callers of :mod:`ot_coupling.kernels.race` (exact shared-Gumbel acceptance, numpy and
torch) and :mod:`ot_coupling.kernels.selection` (``solvers.selection_law``, the optimal verifier:
numpy layout path at V = 2048, numpy importance path and torch at V = 49152, k = 8). As in
``benchmarks/bench_kernels.py``, every measurement runs in a subprocess with ``PYTHONPATH`` on one
tree, the trees alternate for ``--rounds`` rounds, and each side keeps the best CPU time (one thread)
of ``--repeats`` calls, so a shared, loaded machine slows both sides alike.

    git -C <repo> archive main | tar -x -C /tmp/base
    python benchmarks/bench_race_selection.py --base /tmp/base [--rounds 3] [--repeats 3]
"""

from __future__ import annotations

from _shared import compare_trees, tree_parser

CHILD = r'''
from ot_coupling.gumbel import gumbel_acceptance as np_gumbel
from gpu_backend.gumbel import gumbel_acceptance as torch_gumbel
from gpu_backend.optimal import TorchOptimal
from solvers.selection_law import selection_law
from solvers.importance_weights import importance_plan
from solvers.optimal_verifier import OptimalVerifier

rng = np.random.default_rng(0)
for V, k in ((50, 2), (200, 2), (200, 4), (200, 8), (2048, 1)):
    p, q = rng.dirichlet(np.ones(V)), rng.dirichlet(np.ones(V))
    add(f"gumbel acceptance numpy, 1 row, V={V}, k={k}", lambda: np_gumbel(p, q, k))
for B, V, k in ((2, 100, 2), (2, 100, 4), (1, 150, 8), (16, 49152, 1)):
    P, Q = torch.tensor(rng.dirichlet(np.ones(V), size=B)), torch.tensor(rng.dirichlet(np.ones(V), size=B))
    add(f"gumbel acceptance torch [{B}, {V}], k={k}", lambda: torch_gumbel(P, Q, k))
P, Q = rng.dirichlet(np.ones(49152), size=16), rng.dirichlet(np.ones(49152), size=16)
add("selection_law numpy [16, 49152], k=8", lambda: selection_law(P, Q, 8))
for V in (512, 2048):
    p, q = rng.dirichlet(np.ones(V)), rng.dirichlet(np.ones(V))
    add(f"optimal numpy layout, 1 row, V={V}, k=8", lambda: OptimalVerifier("layout").acceptance(p, q, 8))
for conc in (1.0, 0.05):
    P, Q = rng.dirichlet(np.full(49152, conc), size=1), rng.dirichlet(np.full(49152, conc), size=1)
    pt, qt = torch.tensor(P), torch.tensor(Q)
    add(f"optimal numpy importance, 1 row, V=49152, Dirichlet({conc}), k=8", lambda: importance_plan(P, Q, 8))
    add(f"optimal torch, 1 row, V=49152, Dirichlet({conc}), k=8", lambda: TorchOptimal().acceptance(pt, qt, 8))
'''


def main() -> None:
    args = tree_parser(__doc__.splitlines()[0], repeats=3).parse_args()
    compare_trees(CHILD, args, [], f"best CPU time of {args.rounds} rounds x {args.repeats} calls, one thread")


if __name__ == "__main__":
    main()
