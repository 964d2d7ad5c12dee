import sys
from pathlib import Path

import pytest

# make tests/oracles.py importable as `oracles`
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread: tiny models are fastest there (extra intra-op threads only
    add overhead, and on a shared 2-core machine they make timings erratic)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
