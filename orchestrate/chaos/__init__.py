"""Chaos scenarios: a job on the running cluster, a fault injected while it runs, a verdict.

``runner.ChaosRun`` plans and runs them; ``scenarios`` injects and heals each fault through
the backend's ``Faults``; ``verdict`` and ``recovery`` judge a run; ``marks`` puts its events
on the dashboard's chart; ``show`` prints the verdict table. The scenarios themselves (names,
targets, options, defaults) are declared in ``orchestrate.model.chaos``.
"""
