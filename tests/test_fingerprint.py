"""The code fingerprint: a result is keyed by the code that computes it, and by nothing of its comments or layout."""

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import course_lib.masks
from course_lib import cache, experiments, fingerprint
from course_lib.profiles import seed_shift

BASE = '''"""Settings shared by the toy methods."""

SCALE = 2  # how much a method scales its input
'''

METHOD = '''"""A toy method: it scales its input by the shared SCALE."""

{import_line}


def run(x):
    """Scale ``x``."""
    return {scale} * x
'''

# Every way a module can import a sibling of its package; each must be followed.
IMPORTS = {
    "from .base import SCALE": "SCALE",
    "from toy_methods.base import SCALE": "SCALE",
    "from . import base": "base.SCALE",
    "from toy_methods import base": "base.SCALE",
    "import toy_methods.base": "toy_methods.base.SCALE",
}


@pytest.fixture(params=list(IMPORTS))
def toy(request, tmp_path, monkeypatch) -> Path:
    """A throwaway package ``toy_methods`` on ``sys.path``: ``method`` imports ``SCALE`` from ``base``."""
    package = tmp_path / "toy_methods"
    package.mkdir()
    (package / "__init__.py").write_text('"""Toy methods, for the cache tests."""\n')
    (package / "base.py").write_text(BASE)
    (package / "method.py").write_text(METHOD.format(import_line=request.param, scale=IMPORTS[request.param]))
    monkeypatch.syspath_prepend(tmp_path)
    return package


def _counting_run(calls: list[int], directory: Path):
    def run() -> int:
        calls.append(1)
        return len(calls)
    return lambda: cache.cached_run("toy", {"x": 3}, run, code="toy_methods.method", directory=directory)


def test_the_fingerprint_follows_imports_of_the_package(toy):
    modules = fingerprint.code_modules("toy_methods.method")  # with ``toy_methods`` itself when the import names it
    assert set(modules) - {"toy_methods"} == {"toy_methods.base", "toy_methods.method"}
    assert fingerprint.code_modules("toy_methods.base") == ["toy_methods.base"]  # imports point one way only


def test_changing_a_constant_of_an_imported_module_recomputes(toy, tmp_path):
    calls: list[int] = []
    run = _counting_run(calls, tmp_path / "cache")
    before = fingerprint.code_fingerprint("toy_methods.method")
    assert run() == 1 and run() == 1 and len(calls) == 1  # nothing changed: a hit
    (toy / "base.py").write_text(BASE.replace("SCALE = 2", "SCALE = 3"))  # the same size, at once: still seen
    assert fingerprint.code_fingerprint("toy_methods.method") != before
    assert run() == 2 and len(calls) == 2
    assert run() == 2 and len(calls) == 2


def test_comments_docstrings_and_formatting_do_not_count(toy, tmp_path):
    calls: list[int] = []
    run = _counting_run(calls, tmp_path / "cache")
    before = fingerprint.code_fingerprint("toy_methods.method")
    run()
    (toy / "base.py").write_text(BASE.replace("Settings shared", "The settings, shared")
                                 .replace("# how much", "# by how much").replace("SCALE = 2", "SCALE=(\n    2\n)\n\n"))
    method = (toy / "method.py").read_text()
    (toy / "method.py").write_text(method.replace('"""Scale ``x``."""', '"""Scale ``x``, and say so."""\n    # twice'))
    assert fingerprint.code_fingerprint("toy_methods.method") == before
    run()
    assert len(calls) == 1


def test_a_subpackage_follows_parent_relative_imports(tmp_path, monkeypatch):
    package = tmp_path / "toy_methods"
    (package / "family").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text(BASE)
    (package / "unused.py").write_text("")
    (package / "family" / "__init__.py").write_text("from . import helper\n")
    (package / "family" / "helper.py").write_text("def twice(x):\n    from ..base import SCALE\n    return SCALE * x\n")
    monkeypatch.syspath_prepend(tmp_path)
    assert fingerprint.code_modules("toy_methods.family") == ["toy_methods.base", "toy_methods.family",
                                                        "toy_methods.family.helper"]
    assert fingerprint.package_modules("toy_methods") == ["toy_methods", "toy_methods.base", "toy_methods.family",
                                                    "toy_methods.family.helper", "toy_methods.unused"]


def test_over_seeds_keys_each_seed_on_the_code(toy, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path / "cache"))
    calls: list[int] = []

    def run(seed: int) -> dict[str, int]:
        calls.append(seed)
        return {"value": seed}

    for _ in range(2):
        experiments.over_seeds("toy", {}, run, [0, 1], progress=False, code="toy_methods.method")
    assert calls == [0, 1]
    (toy / "base.py").write_text(BASE.replace("SCALE = 2", "SCALE = 3"))
    experiments.over_seeds("toy", {}, run, [0, 1], progress=False, code="toy_methods.method")
    assert calls == [0, 1, 0, 1]


def test_code_typed_outside_the_library_is_keyed_by_the_whole_package(tmp_path):
    whole = fingerprint.package_modules("course_lib")
    assert {"course_lib", "course_lib.cache", "course_lib.masks", "course_lib.training.loop"} <= set(whole)
    assert fingerprint.default_code(lambda: 1) == whole  # defined in this test module, not in course_lib
    assert fingerprint.code_fingerprint(*fingerprint.default_code(lambda: 1)) == fingerprint.code_fingerprint(*whole)
    calls: list[int] = []
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731 - as typed in a notebook
    cache.cached_run("exp", {"a": 1}, compute, directory=tmp_path)
    cache.cached_run("exp", {"a": 1}, compute, code=whole, directory=tmp_path)
    assert len(calls) == 1  # the default was the whole package
    cache.cached_run("exp", {"a": 1}, compute, code="course_lib.masks", directory=tmp_path)
    assert len(calls) == 2


def test_code_of_the_library_is_keyed_by_its_own_module():
    assert fingerprint.default_code(seed_shift) == ["course_lib.profiles"]
    assert fingerprint.code_fingerprint(course_lib.masks) == fingerprint.code_fingerprint("course_lib.masks")
    assert fingerprint.code_fingerprint("course_lib.masks") != fingerprint.code_fingerprint("course_lib.profiles")


def test_the_baseline_is_keyed_by_the_training_loop_and_all_it_imports():
    modules = fingerprint.code_modules(*cache.BASELINE_CODE)
    assert {"course_lib.training.loop", "course_lib.training.config", "course_lib.training.hooks",
            "course_lib.data", "course_lib.devices", "course_lib.profiles", "course_lib.models"} <= set(modules)
    assert "course_lib.training.config" in fingerprint.code_modules("course_lib.training.loop")
    assert "course_lib.cache" not in modules  # the cache imports the loop, not the other way round


@pytest.mark.parametrize("name", ["course_lib.trainig", "__main__", "sys"])
def test_a_module_without_source_is_named_in_the_error(name, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))  # a notebook's: no module spec
    with pytest.raises(ValueError, match=f"names '{name}'.*course_lib.masks"):
        cache.cached_run("exp", {}, lambda: 1, code=["course_lib.masks", name], directory=tmp_path)
    with pytest.raises(ValueError, match="at least one module"):
        fingerprint.code_fingerprint()


def test_a_module_run_with_python_m_has_the_fingerprint_it_has_when_imported(tmp_path, monkeypatch):
    """``python -m course_lib.chapters.ch06_sparse_training`` fills the cache the notebook reads: same keys."""
    package = tmp_path / "toy_job"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "job.py").write_text("from course_lib import fingerprint\n\n"
                                    "if __name__ == '__main__':\n    print(fingerprint.code_fingerprint(__name__))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parent.parent)])}
    printed = subprocess.run([sys.executable, "-m", "toy_job.job"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip()
    monkeypatch.syspath_prepend(tmp_path)
    assert printed == fingerprint.code_fingerprint("toy_job.job")


def test_a_function_of_a_module_run_with_python_m_is_keyed_by_that_module(monkeypatch):
    main = types.ModuleType("__main__")
    main.__spec__ = importlib.util.find_spec("course_lib.masks")
    monkeypatch.setitem(sys.modules, "__main__", main)

    def compute() -> int:
        return 1

    compute.__module__ = "__main__"  # as in ``python -m course_lib.masks``
    assert fingerprint.default_code(compute) == ["course_lib.masks"]
    assert fingerprint.code_fingerprint("__main__") == fingerprint.code_fingerprint("course_lib.masks")
