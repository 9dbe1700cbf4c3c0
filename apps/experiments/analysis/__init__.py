"""Analysis for comparing runs: pure functions over arrays and plain data (numpy,
no Django, no ORM), unit-tested without a database. Selectors load the arrays;
templates and chart code draw the results.

- :mod:`.curves`: min-max downsampling per pixel bucket, wall time.
- :mod:`.configdiff`: flattened config keys, the differing ones first.
- :mod:`.summary`: final and best value per metric (the one place that knows
  which metrics are better high), and durations.
- :mod:`.seeds`: runs alike but for their seed, pooled (mean and 95% CI).
- :mod:`.importance`: which settings go with a metric (rank tests), and
  :mod:`.forest`: each setting's share of a random forest (scikit-learn).
"""
