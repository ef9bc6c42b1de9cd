# The two commands of the README: `make demo` and `make test`. Everything they build or
# download lives under ~/.cache/alertops, never in the repository.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/alertops
VENV ?= $(CACHE)/venv
PYTHON ?= python3
# The venv is shared by every checkout on the machine (fast fresh clones), but its editable
# install points at one checkout: the stamp is keyed by this checkout's path, so running make in
# another clone re-points it instead of silently testing the other clone's code.
STAMP := $(VENV)/.installed-$(shell printf '%s' "$(CURDIR)" | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install demo test unit lint testenv-up testenv-down testenv-status crds clean-venv

$(STAMP): pyproject.toml
	@mkdir -p $(CACHE)
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --upgrade pip
	@# setuptools warns about every editable install of a flat layout; nothing for a user to do
	@PYTHONWARNINGS=ignore $(VENV)/bin/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

## demo: install, then run the embedded default on shipped data (no servers needed)
demo: install
	@scripts/demo $(VENV)

## lint: ruff (the rules in pyproject.toml) and mypy (strict on the spec models and the operator)
lint: install
	$(VENV)/bin/ruff check .
	@# mypy's cache outside the checkout: a fresh clone checks in a second instead of 26 (the
	@# cache holds paths relative to the checkout and re-checks every file whose hash changed)
	MYPY_CACHE_DIR=$(CACHE)/mypy-cache $(VENV)/bin/mypy

## test: install, lint, bring up the real test environment, run the whole suite. The unit tests
## need no server, so they run while the services start (about a minute saved); their output
## comes first, then the services', then the tests that use them.
test: install lint
	@up_log=$$(mktemp); scripts/testenv up > "$$up_log" 2>&1 & up=$$!; \
	  $(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS); unit=$$?; \
	  wait $$up; up_rc=$$?; echo "scripts/testenv up"; cat "$$up_log"; rm -f "$$up_log"; \
	  if [ $$up_rc -ne 0 ]; then echo "make test: scripts/testenv up failed (exit $$up_rc)" >&2; exit 1; fi; \
	  eval "$$(scripts/testenv env)"; \
	  $(VENV)/bin/python -m pytest tests/integration tests/e2e $(PYTEST_ARGS); rest=$$?; \
	  if [ $$unit -eq 5 ] && [ $$rest -eq 5 ]; then echo "make test: pytest collected no tests: that is a failure" >&2; exit 1; fi; \
	  for rc in $$unit $$rest; do if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then exit $$rc; fi; done

## unit: only the tests that need no server
unit: install
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

testenv-up:
	scripts/testenv up
testenv-down:
	scripts/testenv down
testenv-status:
	scripts/testenv status

clean-venv:
	rm -rf $(VENV)
