"""``python -m orchestrate``.

Run by a Python without the project's dependencies (the system ``python3`` in a clone, say),
importing the CLI would end in a traceback about ``rich``. Say instead, in one line, where
the installed tool is (exit 2, a usage error).
"""

import sys

try:
    from .cli import main
except ModuleNotFoundError as exc:
    if (exc.name or "").partition(".")[0] == "orchestrate":
        raise  # our own code is broken: that traceback is the useful one
    # (distproc, under images/, is importable only once the project is installed)
    print(
        f"orchestrate: {sys.executable} lacks the dependency {exc.name!r}: run `make cluster-up`"
        " (it creates .venv), then `. .venv/bin/activate` or use .venv/bin/orchestrate",
        file=sys.stderr,
    )
    sys.exit(2)

sys.exit(main())
