"""Showing the code that ran: a method's core lines, displayed from the library itself.

Notebooks call ``course_lib``, so a student would never see the few lines
that *are* a method. ``show(fn)`` displays a function's (or class's) source,
highlighted, straight from the module that the notebook just used: the code
shown is the code that ran, and it cannot drift from it.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable

from IPython.display import Markdown


def show(obj: Callable | type, docstring: bool = False) -> Markdown:
    """The source of ``obj`` as a highlighted code block, with where it lives (``docstring=False`` drops it)."""
    try:
        lines = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError) as error:
        raise TypeError(f"Cannot show the source of {obj!r}: only functions and classes defined in Python files "
                        "have one.") from error
    if not docstring and obj.__doc__:
        lines = _without_docstring(lines)
    where = f"{obj.__module__}.{obj.__qualname__}"
    return Markdown(f"`{where}`\n\n```python\n{lines.rstrip()}\n```")


def _without_docstring(source: str) -> str:
    """``source`` without the first triple-quoted string after the ``def``/``class`` line."""
    start = source.find('"""')
    end = source.find('"""', start + 3)
    if start < 0 or end < 0:
        return source
    before, after = source[:start], source[end + 3:]
    return before.rstrip(" ").rstrip("\n") + after if before.strip() else source
