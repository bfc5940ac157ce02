"""Fixtures shared by test modules (defined in tests/support/fixtures.py)."""

from tests.support.fixtures import (  # noqa: F401
    fake_in_thread,
    http_receiver,
    secrets_forgotten_after_each_test,
    smtp_receiver,
    world,
)
