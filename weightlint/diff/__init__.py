"""``weightlint diff`` and ``watch``: checkpoints of one model compared tensor by tensor (the guide's
training health checks). ``engine`` streams the pairs and measures the change (``diff()`` from
Python), ``watch`` orders a run's checkpoints by step, ``measures`` is what the WL7xx rules in
``rules/`` read. Nothing is imported here, so that loading the rules stays light."""
