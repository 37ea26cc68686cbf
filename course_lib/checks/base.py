"""What every check shares: the failure it raises and the line it prints on success."""

from __future__ import annotations


class CheckFailed(AssertionError):
    """The student's function disagrees with the reference."""


def ok(what: str) -> None:
    """Say that a check passed, and what it compared."""
    print(f"✓ {what}")


def fail(message: str) -> None:
    """Stop the check with a message that says what was expected, what came back and the likely mistake."""
    raise CheckFailed(message)
