"""Fingerprints of code: a short hash that changes when the code that computes a result changes.

The run cache (:mod:`course_lib.cache`) keys every result by its settings
*and* by the fingerprint of the modules that compute it, so that editing a
method - a constant, a default, a line - can never load a result that the
old code computed. What counts is the code: the fingerprint hashes each
module's syntax tree without docstrings, so comments, docstrings and layout
may change freely. A module's fingerprint covers every module of its package
that it imports, transitively (:func:`code_modules` lists them)::

    >>> "course_lib.training.config" in code_modules("course_lib.training.loop")
    True
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "course_lib"  # the fallback fingerprint of code the cache cannot see: this whole package
Code = str | ModuleType | Sequence[str | ModuleType]  # a module, by name or object, or several


def _source_file(name: str) -> Path | None:
    """The ``.py`` file of the module ``name``, found without importing it (None when there is none)."""
    top, *rest = name.split(".")
    if top == "__main__":  # the script or notebook that runs: not a module of its own to find
        return None
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported to find it
    except (ImportError, ValueError):  # e.g. an empty name
        return None
    if spec is None:
        return None
    if not rest:
        candidates = [Path(spec.origin)] if spec.origin else []
    else:  # a submodule: a file (or a package folder) below the package's folder
        folders = [Path(folder, *rest) for folder in spec.submodule_search_locations or []]
        candidates = [c for folder in folders for c in (folder.with_suffix(".py"), folder / "__init__.py")]
    return next((c for c in candidates if c.suffix == ".py" and c.is_file()), None)


_Import = tuple[int, str, tuple[str, ...]]  # (level of a relative import, module, names taken from it)


@functools.lru_cache(maxsize=1024)
def _parse(source: bytes) -> tuple[str, tuple[_Import, ...]]:
    """The hash of a module's code without docstrings, comments and formatting, and its imports.

    ``ast.dump`` writes out the syntax tree, which holds no comments and no
    layout; the docstrings are taken out of it first. Memoised on the source
    itself, so an edited file is parsed again and an unchanged one is not.
    """
    tree = ast.parse(source)
    imports: list[_Import] = []
    for node in ast.walk(tree):  # every import, also those inside functions and ``if TYPE_CHECKING:``
        if isinstance(node, ast.Import):
            imports += [(0, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module or "", tuple(alias.name for alias in node.names)))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest(), tuple(imports)


def _imported_names(importer: str, is_package: bool, level: int, module: str, names: tuple[str, ...]) -> list[str]:
    """The modules an import statement in the module ``importer`` may load.

    ``from .base import X`` in ``toy.method`` names ``toy.base``;
    ``from toy import base`` names ``toy`` and, if it is a submodule, ``toy.base``.
    """
    if level:  # relative: counted from the importer's package (the importer itself when it is a package)
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        module = ".".join(package[:len(package) - level + 1] + ([module] if module else []))
    return [module, *(f"{module}.{name}" for name in names)]


def _run_as(name: str) -> str:
    """The module's own name, also when it runs as ``python -m package.module`` (then ``__name__`` is ``"__main__"``
    and the import system keeps the real name in ``__spec__``): a chapter's command and the notebook that imports
    the chapter must fingerprint the same code, or the command fills cache entries the notebook never finds."""
    if name == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            return spec.name
    return name


def _module_name(module: str | ModuleType) -> str:
    name = _run_as(module.__name__ if isinstance(module, ModuleType) else module)
    if _source_file(name) is None:
        raise ValueError(f"The code to fingerprint names {name!r}, but no Python source of such a module was "
                         f"found. Pass modules written in Python, by name (e.g. 'course_lib.masks') or as objects.")
    return name


def _module_hashes(*modules: str | ModuleType) -> dict[str, str]:
    """Each named module and each module of its package it imports, transitively -> the hash of its code."""
    hashes: dict[str, str] = {}
    todo = [_module_name(module) for module in modules]
    while todo:
        name = todo.pop()
        if name in hashes:
            continue
        path = _source_file(name)
        if path is None:  # a name imported from a module (``from toy import CONSTANT``), not a submodule
            continue
        hashes[name], imports = _parse(path.read_bytes())
        for statement in imports:
            found = _imported_names(name, path.name == "__init__.py", *statement)
            todo += [other for other in found if other.split(".")[0] == name.split(".")[0]]
    return hashes


def code_modules(*modules: str | ModuleType) -> list[str]:
    """The modules whose code :func:`code_fingerprint` hashes: those named and what they import of their package."""
    return sorted(_module_hashes(*modules))


def code_fingerprint(*modules: str | ModuleType) -> str:
    """A short hash of the code of ``modules`` and of every module of their package they import, transitively.

    Modules are named (``"course_lib.masks"``) or given as module objects;
    their files are read and parsed, not imported. Comments, docstrings and
    formatting do not count; any other change - a constant, a default, a
    line of a function - gives another fingerprint.
    """
    if not modules:
        raise ValueError("code_fingerprint needs at least one module, e.g. code_fingerprint('course_lib.masks').")
    text = json.dumps(_module_hashes(*modules), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def package_modules(package: str = PACKAGE) -> list[str]:
    """Every module of ``package``, found from its files (nothing is imported)."""
    init = _source_file(_module_name(package))
    if init is None or init.name != "__init__.py":
        raise ValueError(f"{package!r} is not a package (a folder with an __init__.py).")
    names = [(package, *f.relative_to(init.parent).with_suffix("").parts) for f in sorted(init.parent.rglob("*.py"))]
    return [".".join(parts).removesuffix(".__init__") for parts in names
            if all(part.isidentifier() for part in parts)]  # not e.g. .ipynb_checkpoints/x-checkpoint.py


def default_code(compute: Callable[..., Any]) -> list[str]:
    """The modules assumed to determine the result of ``compute`` when no ``code`` is given.

    A function of ``course_lib`` is determined by its own module (and what it
    imports); any other - a lambda typed in a notebook, whose source the
    cache cannot see - by the whole ``course_lib`` package: a change anywhere
    in the library recomputes it, so it is never stale.
    """
    module = _run_as(getattr(compute, "__module__", None) or "")
    if module.split(".")[0] == PACKAGE and _source_file(module) is not None:
        return [module]
    return package_modules(PACKAGE)


def code_names(code: Code) -> list[str | ModuleType]:
    return [code] if isinstance(code, (str, ModuleType)) else list(code)
