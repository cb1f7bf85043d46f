# Everything goes through .venv, built from requirements.txt on first use.
PY_SYS ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: charge test bench deploy clean mpy

$(STAMP): requirements.txt setup.cfg pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

charge: $(STAMP)
	$(PY) -m host_tools.charge $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m host_tools.bench $(ARGS)

clean:
	rm -rf build .pytest_cache
