"""The report of an experiment: assembled above the statistics, the ROI and the store.

* ``report``       ``experiment_report(con, record)``: reads the record and the event log (one SQL
                   query), runs ``armor_ab.stats`` on the sufficient statistics, prices the effect
                   with ``armor_ab.roi``, and adds the verdict; also ``past_roi_effects`` (the ROI
                   prior from past experiments) and ``primary_baseline`` (power planning)
* ``models``       the report's schema: ``ExperimentReport`` and a model per block (pydantic)
* ``verdict``      ``decide_report(report)``: ship / keep running / stop, from the report alone
* ``wording``      plain words for lifts, intervals and money (the verdict's headlines)
* ``error_rates``  seeded simulations of the verdict's error rates (docs/statistics.md)

Layers, top to bottom: api / cli / dashboards -> reporting -> stats, roi, store, experiments.
``armor_ab.stats`` is pure statistics and imports nothing of the others; ``armor_ab.roi`` is pure
money maths.
"""
