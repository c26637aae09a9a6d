"""Performance monitoring: windows of live data, delayed labels, realized and estimated metrics.

- :mod:`.types`: the window a monitoring run stands for, a metric with its interval, a verdict;
- :mod:`.window`: which objects or rows of a source fall in a window (by mtime, partition, column);
- :mod:`.config`: the performance settings (degradation rule, bootstrap, estimation);
- :mod:`.realized`: realized metrics with bootstrap confidence intervals;
- :mod:`.rule`: the degradation rule that turns a metric and the champion's reference into a verdict;
- :mod:`.labels`: joining delayed labels to the scored predictions of their window; label drift;
- :mod:`.estimation`: performance estimated before labels arrive (CBPE for classifiers, DLE for
  regressors), calibrated on the champion's reference split;
- :mod:`.history` and :mod:`.trend`: the per-window records, time series (Parquet table, MLflow
  steps) and the HTML trend report;
- :mod:`.reference`: what a champion version brings: its reference metrics and calibration data;
- :mod:`.run`: one monitoring run's performance check, as the operator calls it;
- :mod:`.synthetic`: data whose truth is known (shifted windows), for tests and benchmarks.

Nothing here imports Airflow (DESIGN.md: ``core/`` is plain Python).
"""
