"""A kind module that fails to import (as user code with a bug at import time does)."""

raise RuntimeError("this module is broken at import time")


def anything(n: int) -> int:
    return n
