"""markov.plots: every figure is written as PNG and SVG and returns the numbers it plotted."""

from pathlib import Path

import numpy as np

from markov import plots


def test_figures(tmp_path):
    out = plots.plot_rejections_vs_runs(tmp_path, n_tokens=20, n_runs=300)
    assert abs(out["data"]["simulated"] - out["data"]["exact"]) <= 4 * out["data"]["se"]
    out2 = plots.plot_batch_rejections(tmp_path, n_tokens=20, Ms=[1, 2, 4], n_runs=200)
    assert np.all(np.diff(out2["data"]["exact"]) <= 1e-12) and out2["data"]["limit"] > 0
    out3 = plots.plot_pareto(tmp_path, n_samples=20000)
    assert out3["data"]["line_gap"] < 1e-8
    assert np.allclose(np.array(out3["data"]["sim_rejection"]) + out3["data"]["sim_loss"], out3["data"]["tv"],
                       atol=0.05)
    out4 = plots.plot_speedup(tmp_path)
    assert out4["data"]["optimal"][0.0][-1] >= out4["data"]["optimal"][0.2][-1]
    for o in (out, out2, out3, out4):
        assert len(o["paths"]) == 2
        for p in o["paths"]:
            assert Path(p).stat().st_size > 1000
