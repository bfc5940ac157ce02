"""Fixtures shared by test modules."""

from .test_e2e_run import world  # noqa: F401  (the end-to-end fixture, for test_ops too)
