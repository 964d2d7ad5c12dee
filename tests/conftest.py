import sys
from pathlib import Path

# make tests/oracles.py importable as `oracles`
sys.path.insert(0, str(Path(__file__).parent))
