# `tests.fakes.commpeak` is `fakes.commpeak`: see ../conftest.pyi.
from fakes.commpeak import *
