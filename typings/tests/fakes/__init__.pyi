# `tests.fakes` (the benchmarks' name) is the package mypy checks as `fakes` (the tests'): see ../conftest.pyi.
from fakes import *
