# pynx-dlgap: two commands do everything on a fresh machine.
#   make demo   # sets up what is missing, then runs the main job
#   make test   # sets up what is missing, then runs the tests
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pynx-dlgap-setup
OUT    ?= out/demo
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean-venv

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml scripts/setup.sh
	VENV=$(abspath $(VENV)) bash scripts/setup.sh
	touch $@

demo: $(STAMP)
	$(VENV)/bin/pynx-dlgap demo --out $(OUT) --overwrite

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/gap_fill.py

clean-venv:
	rm -rf $(VENV)
