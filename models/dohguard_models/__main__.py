"""Command line: ``python -m dohguard_models {train,prepare,fixture}``; see ``--help``."""

import os

# Under CPU contention (other builds on the same cores) OpenMP's busy-waiting threads slow
# PyTorch several-fold; passive waiting must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main  # noqa: E402

raise SystemExit(main())
