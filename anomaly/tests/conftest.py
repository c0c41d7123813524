import sys
from pathlib import Path

# The package lives in anomaly/ (not installed): make it importable from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
