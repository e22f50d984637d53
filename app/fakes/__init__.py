"""Loopback fakes of the upstream providers' HTTP APIs, byte for byte as their seed documents say.

Used by the integration tests, `make run` demos and the benchmarks. They listen on 127.0.0.1 only.
"""
