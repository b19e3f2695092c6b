"""The statistics engine: SQL sufficient statistics, then small, tested formulas.

* ``sql``         one DuckDB query -> ``ExperimentSums`` (per variant, per day, per segment)
* ``suffstats``   frozen, mergeable sufficient statistics (n, sums, squares, cross-products)
* ``estimate``    per-arm estimates, delta method, CUPED
* ``frequentist`` Welch t-test, relative lift, non-inferiority
* ``sequential``  asymptotic confidence sequences (always valid under peeking)
* ``bayesian``    Gaussian posterior of the relative lift
* ``srm``, ``multiple``, ``power``
* ``report``      ``experiment_report(con, record)``: everything above as one JSON-able dict
"""
