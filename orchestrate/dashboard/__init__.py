"""``orchestrate dashboard``: the cluster and its tasks as a live web page.

Three layers, each testable alone:

- ``live``: ``LiveState``, the data layer. It reads only what the orchestrator already has
  (the backend's inventory, the master's ``status`` and ``report`` through
  ``Backend.control``) and turns it into the one JSON document the page renders
  (``LiveState.snapshot``). No web, no threads: unit-tested on the ``FakeBackend``.
- ``poller``: ``Poller``, one thread per dashboard that polls the backend on a fixed period
  whatever the number of open pages, and runs the page's actions (start a job, cancel it,
  run the checks) through ``ClusterRun``.
- ``server``: the Starlette app (page, server-sent events, actions) and its security model:
  localhost by default, a token for every state-changing request, CSRF-safe.

Nothing here adds a port on the master or a new trust: the dashboard is one more client of
the backend, like the CLI.
"""
