"""dohguard's anomaly detection of the gateway's own metrics (issue 9).

- `traffic`, `export`: the labelled metrics data set's traffic generator, fault injectors and
  Prometheus export (`python -m dohguard_anomaly record`, driven by `cargo xtask record-metrics`).
- `features`: the feature list (contract 5), CSV loading, gap filling, windows.
- `detectors`: the autoencoder and the baselines; `alerting`: smoothing, POT threshold,
  hysteresis; `scoring`: the evaluation metrics; `simulate`: the clean-data simulator.
- `model.AnomalyModel`: the class for operators; `experiment`, `report`: the retrain run.
"""


def __getattr__(name):
    # Lazy: `record` does not need torch.
    if name == "AnomalyModel":
        from .model import AnomalyModel

        return AnomalyModel
    raise AttributeError(name)
