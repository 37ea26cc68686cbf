# The two commands of the course (see README):
#   make lab   - create the environment if missing, then open JupyterLab on the course (START_HERE.ipynb)
#   make test  - create the environment if missing, then run the whole test suite (quick profile)
# and, not a set-up step: make site - the course as a static website in build/site/ (tools/build_site.py)

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
KERNEL := pruning-course

.PHONY: lab test site exercises seed-sweep grade validate env clean-env

env: $(STAMP)

# Re-install whenever pyproject.toml changes (new pins). --no-compile: pip would byte-compile all ~13,000 installed
# modules; Python compiles the few hundred the course imports on first use instead, and caches them as usual.
# Installing took 56 s instead of 85 (an idle 2-core machine, two runs each, alternating).
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: $(PYTHON) not found. The course needs Python 3.11: install it, or run" \
	       "'make PYTHON=/path/to/python3.11 ...', or use the conda route in the README."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	$(BIN)/python -m ipykernel install --user --name $(KERNEL) --display-name "Pruning course (Python 3.11)" >/dev/null
	@touch $(STAMP)
	@echo "environment ready in $(VENV)"

# Jupyter refuses to run as root unless told; containers and CI machines often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

# Serve the repository root, so that notebooks/, exercises/ and solutions/ are all in the file browser,
# and open the landing page that links them in teaching order (tests/test_lab_command.py checks both).
lab: $(STAMP)
	$(BIN)/jupyter lab $(ROOT_FLAG) --ServerApp.root_dir="$(CURDIR)" START_HERE.ipynb

# COURSE_PROFILE=quick: every notebook in CI size. Unit tests, the browser test, nbval over the lecture
# notebooks and the solved exercises, and the unsolved exercises' first checks.
# Two workers (pytest-xdist), each notebook and test module whole on one of them; see conftest.py.
# Then the website test (tests/test_site.py), which renders the lectures that run executed (conftest.py keeps them).
TEST_WORKERS ?= 2
test: $(STAMP)
	COURSE_PROFILE=quick $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "not site"
	COURSE_PROFILE=quick $(BIN)/python -m pytest -m site tests/test_site.py

# The course as a static website in build/site/ (open build/site/index.html; works from disk, offline). Every
# lecture is executed in SITE_PROFILE with the run cache (a current executed copy is reused); COURSE_SEED applies.
#   make site                     # full profile, the lecture's numbers
#   make site SITE_PROFILE=quick  # minutes (two lectures at a time; tools/build_site.py --jobs 1 for one)
SITE_PROFILE ?= full
site: $(STAMP)
	$(BIN)/python tools/build_site.py --profile $(SITE_PROFILE)

# Execute chapters under several COURSE_SEED values and print every claim's margin (tools/seed_sweep.py), e.g.
#   make seed-sweep PROFILE=full SEEDS=1 NOTEBOOKS="notebooks/01_*.ipynb notebooks/03_*.ipynb" JOBS=1
PROFILE   ?= quick
SEEDS     ?= 1 2
JOBS      ?= 2
NOTEBOOKS ?= notebooks/*.ipynb
seed-sweep: $(STAMP)
	$(BIN)/python tools/seed_sweep.py --profile $(PROFILE) --seeds $(SEEDS) --jobs $(JOBS) $(NOTEBOOKS)

# Grade a class (tools/grade.py): SUBMISSIONS holds {student}/{exercise file name}.ipynb; OUT gets grades.csv
# and feedback/{student}.md. A student checks a notebook exactly as the grader will run it with `make validate`.
#   make grade SUBMISSIONS=submitted OUT=graded
#   make validate NOTEBOOK=exercises/06_sparse_training.ipynb
SUBMISSIONS ?= submitted
OUT         ?= graded
grade: $(STAMP)
	$(BIN)/python tools/grade.py grade $(SUBMISSIONS) $(OUT)

validate: $(STAMP)
	@test -n "$(NOTEBOOK)" || { echo "error: say which notebook, e.g. make validate NOTEBOOK=exercises/06_sparse_training.ipynb"; exit 1; }
	$(BIN)/python tools/grade.py validate $(NOTEBOOK)

# exercises/ is generated from solutions/ (the single source); never edit exercises/ by hand.
exercises: $(STAMP)
	$(BIN)/python tools/make_exercises.py

clean-env:
	rm -rf $(VENV)
