# alphaprune — the two commands of the README do all set-up on a fresh machine.
#   make report   run the weekly report pipeline (default: params/week09.yaml)
#   make test     run the test suite (slow tests included unless PYTEST_ARGS says otherwise)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PARAMS ?= params/week09.yaml
PYTEST_ARGS ?=
STAMP := $(VENV)/.alphaprune-installed

.PHONY: report test lint venv pdf-engine bench lab clean-reports

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,compare]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

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

test: $(STAMP) pdf-engine
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/shrink_speed.py
	$(PY) benchmarks/gate_overhead.py

# JupyterLab on the notebooks (as root it needs --allow-root, added here automatically).
lab: $(STAMP)
	@$(VENV)/bin/jupyter-lab --version >/dev/null 2>&1 || $(PY) -m pip install --quiet -e '.[dev,compare,lab]'
	$(VENV)/bin/jupyter lab --notebook-dir=. $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

clean-reports:
	rm -rf reports/week*/ reports/ci/
