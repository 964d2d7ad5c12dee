"""Same-run before/after timing of the kernel layer: this tree against another checkout (``--base``).

Every measurement runs in a subprocess with ``PYTHONPATH`` pointing at one tree (so two versions of
the same packages never meet in one interpreter); the trees alternate for ``--rounds`` rounds and
each reports the best CPU time (one thread) of ``--repeats`` calls, so a shared, loaded machine
slows both sides alike. Prints a Markdown table with the before/after ratio per measurement.

    git worktree add /tmp/base <commit>
    python benchmarks/bench_kernels.py --base /tmp/base [--rounds 3] [--quick]
"""

from __future__ import annotations

from _shared import compare_trees, tree_parser

CHILD = r'''
from gpu_backend.registry import get_selector
from gpu_backend.kseq import kseq_rho
from gpu_backend.optimal import TorchOptimal
from solvers.importance_weights import importance_plan
import ot_coupling
V, B = int(sys.argv[3]), int(sys.argv[4])

rng = np.random.default_rng(0)
for conc in (1.0, 0.05):
    P, Q = rng.dirichlet(np.full(V, conc), size=1), rng.dirichlet(np.full(V, conc), size=1)
    pt, qt = torch.tensor(P), torch.tensor(Q)
    add(f"optimal torch, 1 row, Dirichlet({conc}), k=8", lambda: TorchOptimal().acceptance(pt, qt, 8))
    add(f"optimal numpy importance, 1 row, Dirichlet({conc}), k=8", lambda: importance_plan(P, Q, 8))
P, Q = rng.dirichlet(np.ones(V), size=B), rng.dirichlet(np.ones(V), size=B)
pt, qt = torch.tensor(P), torch.tensor(Q)
g = torch.Generator().manual_seed(0)
add(f"kseq rho* torch [{B}, V], k=4", lambda: kseq_rho(pt, qt, 4))
for name in ("speculative", "kseq", "rrs", "rrs_wor", "spechub", "greedy", "naive"):
    sel = get_selector(name)
    k = 1 if name == "speculative" else 2
    add(f"{name} torch sample [{B}, V], k={k}", lambda: sel.sample(pt, qt, k, g))
    add(f"{name} torch acceptance [{B}, V], k={k}", lambda: sel.acceptance(pt, qt, k))
for name in ("kseq", "rrs", "rrs_wor"):
    ref = ot_coupling.get_selector(name)
    add(f"{name} numpy acceptance, 1 row, k=3", lambda: ref.acceptance(P[0], Q[0], 3 if name != "rrs_wor" else 2))
from ot_coupling.draft_laws import get_draft_law
for name in ("speculative", "spechub", "greedy"):
    ref = ot_coupling.get_selector(name)
    k = 1 if name == "speculative" else 2
    D = get_draft_law(ref.draft_law).sample_batch(Q, k, rng)
    add(f"{name} numpy verify_batch [{B}, V], k={k}", lambda: ref.verify_batch(P, Q, D, 0))
    add(f"{name} numpy acceptance, 1 row, k={k}", lambda: ref.acceptance(P[0], Q[0], k))
'''


def main() -> None:
    ap = tree_parser(__doc__.splitlines()[0], repeats=5)
    ap.add_argument("--quick", action="store_true", help="V = 4096 instead of 49152")
    args = ap.parse_args()
    V, B = (4096, 8) if args.quick else (49152, 16)
    compare_trees(CHILD, args, [str(V), str(B)],
                  f"V = {V}; best CPU time of {args.rounds} rounds x {args.repeats} calls, one thread")


if __name__ == "__main__":
    main()
