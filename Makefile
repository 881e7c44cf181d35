# Two entry points: `make demo` (set up + run the embedded demo) and `make test` (set up + run every test).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build of torch; install the build that fits your GPU first if you have one.
TORCH  ?= torch==2.13.0

.PHONY: demo test lint venv label-studio clean

$(VENV)/.installed: pyproject.toml deploy/requirements-ci.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[demo,test]' -r deploy/requirements-ci.txt
	touch $@

venv: $(VENV)/.installed

# Label Studio is a separate server with its own pinned dependencies: its own virtualenv.
label-studio:
	PYTHON=$(PYTHON) bash deploy/label-studio/setup.sh

demo: venv
	$(VENV)/bin/driftmon demo

# Lint, format and types (configured in pyproject.toml); `make test` runs it first.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: venv lint label-studio
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .venv-labelstudio build *.egg-info .pytest_cache .mypy_cache .ruff_cache
