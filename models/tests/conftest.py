"""Shared pytest set-up: import the package from models/ and keep torch single-threaded."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
MODELS_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(MODELS_DIR))
FIXTURE_DATA = Path(__file__).resolve().parent / "fixtures" / "data"
