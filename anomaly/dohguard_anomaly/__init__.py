"""dohguard's anomaly detection of the gateway's own metrics (issue 9).

Today: the labelled metrics data set's traffic generator and fault injectors (`traffic`), and
the export of Prometheus features to the data set's CSV (`export`). The detector models and
the `AnomalyModel` class come next.
"""
