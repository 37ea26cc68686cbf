"""The one way the course's tools execute a notebook outside pytest: nbclient, without its Output-widget mimic.

nbclient imitates a browser for ``ipywidgets.Output``: every output a cell sends into an Output widget is echoed back
to the kernel as a ``comm_msg`` on the *shell* socket - the socket on which nbclient is, at that moment, awaiting the
cell's ``execute_reply``. Sending on a zmq.asyncio socket while another task polls it can swallow the wake-up of
that poll, and the reply then sits unread: the cell never finishes, with the kernel idle (nbclient issue #312, open
upstream). Every chapter's widget is an Output widget with a figure in it, so the seed sweep hung on them about once
in ten notebooks (chapter 1's sparsity explorer, chapter 7's Gumbel top-k explorer). Measured with 100 such cells
per notebook, on this 2-core machine: 8 of 12 runs hung with the mimic, 0 of 12 without it.

Nothing the tools do needs the mimic - it only files the widget's outputs inside the widget's saved state instead
of the cell's outputs - so :class:`CourseNotebookClient` switches it off. nbval (``make test``) does not imitate
widgets and is not affected.
"""

from __future__ import annotations

from typing import Any

from nbclient import NotebookClient
from nbformat import NotebookNode


class CourseNotebookClient(NotebookClient):
    """``nbclient.NotebookClient`` that never sends on the shell socket while a cell runs (see the module docstring).

    An Output widget's outputs land in the cell's outputs, as text and images, instead of the widget's state.
    """

    def __init__(self, nb: NotebookNode, **kw: Any) -> None:
        super().__init__(nb, **kw)
        self.widget_registry = {}  # no Output-widget mimic, so no comm_msg on the shell socket
