"""pytest settings for the whole suite: tests/, and the notebooks nbval runs from notebooks/ and solutions/."""

from __future__ import annotations

import pytest

# After the kernel reports that a cell has finished, nbval waits for each of the cell's output messages with a
# hard-coded 5 s timeout. On a busy 2-core machine a cell that streamed many progress-bar updates can deliver its
# last outputs later than that; nbval then fails a cell that ran correctly ("Timeout of 5 seconds exceeded waiting
# for output", seen on chapter 3 in a CI run). The cell's own time limit (--nbval-cell-timeout) is unchanged.
NBVAL_OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
