# The benchmarks, run from the repository root, import tests/conftest.py as `tests.conftest`; the tests,
# with tests/ on pytest's path, as `conftest`. mypy can give one file one module name only: it checks the
# file as `conftest`, and this stub says `tests.conftest` is that same module.
from conftest import *
