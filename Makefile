# alphaprune — the two commands of the README do all set-up on a fresh machine.
#   make report   run the weekly report pipeline (default: params/week09.yaml)
#   make test     run the test suite (slow tests included unless PYTEST_ARGS says otherwise)
#   make test-quick, lint, lab, html, pdf, bench: see README
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PARAMS ?= params/week09.yaml
PYTEST_ARGS ?=
STAMP := $(VENV)/.alphaprune-installed
# The CPU build of torch comes from PyTorch's CPU index (environment.yml uses the same index).
# torchvision (the zoo extra: benchmarks/zoo_real.py) is installed --no-deps in the release made
# for that torch, so that pip never swaps torch for a CUDA build; the PyPI wheel imports on the
# CPU torch through benchmarks/torchvision_shim.py.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# An executed notebook to export with `make html` / `make pdf`.
NB ?= reports/week09/06_report.ipynb
# Notebook cleaning, as in .pre-commit-config.yaml: outputs, counts, papermill/widget metadata.
NB_EXTRA_KEYS := metadata.papermill cell.metadata.papermill cell.metadata.execution metadata.widgets
NBSTRIP := $(VENV)/bin/nbstripout --extra-keys "$(NB_EXTRA_KEYS)"
LINTED := lib tests benchmarks notebooks

.PHONY: report test test-unit test-quick lint format venv kernel-config notebook-filter pdf-engine bench lab html pdf clean-reports study runs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'torch==2.13.0' --extra-index-url $(TORCH_INDEX)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'torchvision==0.28.0' --extra-index-url $(TORCH_INDEX)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,compare,dask,zoo]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@$(MAKE) --no-print-directory kernel-config
	@$(MAKE) --no-print-directory notebook-filter
	@touch $(STAMP)

# git strips notebook outputs on `git add`/`git diff` (a notebook saved in JupyterLab with its
# outputs leaves the tree clean); the same keys as `make format` (.gitattributes is committed)
notebook-filter:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  $(VENV)/bin/nbstripout --install --attributes .gitattributes && \
	  git config filter.nbstripout.extrakeys "$(NB_EXTRA_KEYS)"; fi

venv: $(STAMP)

# The kernel's own log (not the notebooks' output: cell errors still show there) stays quiet:
# ipykernel warns about its TCP transport at every start, and jupyter_client interrupts a kernel
# before shutting it down, which can log "KeyboardInterrupt caught in kernel" after a good run.
kernel-config:
	@prefix=$$($(PY) -c 'import sys; print(sys.prefix)') && mkdir -p "$$prefix/etc/ipython" && \
	  printf '%s\n' '# written by make kernel-config (alphaprune): a quiet kernel log' \
	  'c.IPKernelApp.log_level = "CRITICAL"' > "$$prefix/etc/ipython/ipython_kernel_config.py"

# Chromium prints the HTML report to PDF. Installed with apt when missing and we are root;
# otherwise the report still writes HTML and says how to get the PDF.
pdf-engine:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (PDF export) with apt-get"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium; the report will be HTML only"; \
	else echo "note: chromium not found; run 'sudo apt-get install chromium' for the PDF report"; fi

report: $(STAMP) pdf-engine
	$(PY) -m alphaprune report $(PARAMS)

# Tests keep their bytecode (and pytest its rewritten test modules) even where the environment
# says PYTHONDONTWRITEBYTECODE: recompiling the library and every test module is ~9 s a run.
TEST_ENV = PYTHONDONTWRITEBYTECODE=
UNIT_TIER = not slow and not training and not kernel and not heavy

test: $(STAMP) pdf-engine
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -m '$(UNIT_TIER)' $(PYTEST_ARGS)

test-quick: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

# A study (params/studies/*.yaml): its missing runs in JOBS local processes, tables in
# reports/studies/<name>/. Runs are cached in the shared store runs/ (see `make runs`).
STUDY ?= params/studies/schedules.yaml
JOBS ?= 2
study: $(STAMP)
	$(PY) -m alphaprune study $(STUDY) --jobs $(JOBS)

runs: $(STAMP)
	$(PY) -m alphaprune runs list

# The checks of .pre-commit-config.yaml: ruff lint and formatter (enforced), clean notebooks.
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(NBSTRIP) --verify notebooks/*.ipynb

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)
	$(NBSTRIP) notebooks/*.ipynb

bench: $(STAMP)
	$(PY) benchmarks/shrink_speed.py
	$(PY) benchmarks/gate_overhead.py

# JupyterLab on the notebooks (as root it needs --allow-root, added here automatically).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=. $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

# One executed notebook as HTML (nbconvert; code shown), e.g. make html NB=reports/week09/02_reconstruct.ipynb
# An executed notebook's HTML / PDF goes next to it; one from notebooks/ (run in JupyterLab)
# goes to reports/interactive/, never into the committed notebooks/ folder.
EXPORT_DIR = $(if $(filter notebooks/,$(dir $(NB))),reports/interactive/,$(dir $(NB)))

html: $(STAMP)
	@mkdir -p $(EXPORT_DIR)
	$(VENV)/bin/jupyter nbconvert --to html --output-dir $(EXPORT_DIR) $(NB)

# One executed notebook as PDF, the project's route: the report HTML (no code, images embedded)
# printed by headless Chromium. nbconvert's webpdf is not used: it needs Playwright's own browser.
pdf: $(STAMP) pdf-engine
	@mkdir -p $(EXPORT_DIR)
	$(PY) -c 'import sys, pathlib; from alphaprune.report.export import export_report as e; nb = pathlib.Path(sys.argv[1]); print(e(nb, pathlib.Path(sys.argv[2]), stem=nb.stem).message)' $(NB) $(EXPORT_DIR)

clean-reports:
	rm -rf reports/week*/ reports/ci/
