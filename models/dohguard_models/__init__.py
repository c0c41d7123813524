"""dohguard_models: the data preparation, training, ONNX export and evaluation pipeline for
the domain classifier that dohguard's scorer runs.

The package owns everything between ``../shared/data`` (or an organisation's own CSV of
labelled names) and a shipped model folder (``model.onnx``, ``model.card.json``, the
evaluation report and the shared encoding fixture). The input encoding is fixed by
``docs/contracts.md`` and lives in :mod:`dohguard_models.encoding`; every other module builds
on it. Run ``python -m dohguard_models --help`` for the command line.
"""

__version__ = "0.1.0"
