"""The statistics engine: SQL sufficient statistics, then small, tested formulas.

* ``sql``         one query -> ``ExperimentSums`` (per variant, per day, per segment)
* ``pages``       one small query -> ``ServedPages`` (ARMOR pages changed mid-test, fallbacks)
* ``dialects``    the SQL pieces per engine (DuckDB, ClickHouse, Spark, Trino, BigQuery, Snowflake)
* ``suffstats``   frozen, mergeable sufficient statistics (n, sums, squares, cross-products)
* ``estimate``    per-arm estimates, delta method, CUPED
* ``frequentist`` Welch t-test, relative lift, non-inferiority
* ``sequential``  asymptotic confidence sequences (always valid under peeking)
* ``bayesian``    Gaussian posterior of the relative lift
* ``comparison``  one metric, control vs one treatment: every test above (``ComparisonOptions``)
* ``srm``, ``multiple``, ``power``, ``quality``

Pure statistics: nothing here imports the store, the specs, the ROI or the report. The report of an
experiment (reading the store, the ROI, the verdict) is assembled one layer up, in reporting/.
"""
