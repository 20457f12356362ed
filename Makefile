# kgrec: `make demo` runs the main job end to end; `make test` runs the whole test suite.
# Both create .venv and install everything they need on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kgrec-installed
# pinned versions CI last passed with (see the file's header); CONSTRAINTS=/dev/null to resolve afresh
CONSTRAINTS ?= constraints.txt
# the server tests/conftest.py starts, whatever NEO4J_* / KGREC_NEO4J__URI point kgrec at otherwise
TEST_BOLT  := $(or $(KGREC_TEST_BOLT_PORT),7688)
TEST_HTTP  := $(or $(KGREC_TEST_HTTP_PORT),7475)
TEST_NEO4J := env -u NEO4J_URI -u NEO4J_USER -u NEO4J_PASSWORD -u NEO4J_DATABASE -u KGREC_NEO4J__URI -u KGREC_CONFIG \
	KGREC_NEO4J__HOME=.kgrec/neo4j-test-$(TEST_BOLT) KGREC_NEO4J__BOLT_PORT=$(TEST_BOLT) KGREC_NEO4J__HTTP_PORT=$(TEST_HTTP)

.PHONY: install demo test test-lowest constraints neo4j-start neo4j-stop neo4j-status neo4j-test-stop clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	# a venv whose pip does not run is half made (interrupted, or no ensurepip): made again
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	touch $@

install: $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/kgrec demo

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# The suite at the lowest versions pyproject.toml allows for kgrec's direct dependencies
# (uv's lowest-direct resolution), in a separate venv; not part of `make test`.
LOWEST := .kgrec/venv-lowest
test-lowest:
	rm -rf $(LOWEST)  # a fresh venv: one kept from an earlier run would keep versions above the floors
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/pip install -q uv
	$(LOWEST)/bin/uv pip install -q --python $(LOWEST)/bin/python --resolution lowest-direct -e '.[dev]'
	HF_HUB_OFFLINE=1 $(LOWEST)/bin/python -m pytest

# write constraints.txt from the installed venv (after a green `make test`), its pins marked with
# the venv's Python version
VENV_PYTHON = $(shell $(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
constraints: install
	$(BIN)/pip freeze --exclude-editable > constraints.txt.freeze
	grep -v -e '^-e' -e ' @ ' constraints.txt.freeze | sed 's/$$/; python_version == "$(VENV_PYTHON)"/' > constraints.txt.pins
	test -s constraints.txt.pins
	sed -n '/^#/p' constraints.txt | cat - constraints.txt.pins > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -f constraints.txt.freeze constraints.txt.pins

neo4j-start: install
	$(BIN)/kgrec neo4j start

# installed only when there is no kgrec yet: stopping or asking never waits for (or needs the
# network for) an upgrade after a pull
neo4j-stop:
	@[ -x $(BIN)/kgrec ] || $(MAKE) -s install
	$(BIN)/kgrec neo4j stop

neo4j-status:
	@[ -x $(BIN)/kgrec ] || $(MAKE) -s install
	@$(BIN)/kgrec neo4j status; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 3 ] || [ $$rc -eq 4 ]  # stopped (3) or not answering (4): answers, not failures

neo4j-test-stop:
	@if [ -x $(BIN)/kgrec ]; then $(TEST_NEO4J) $(BIN)/kgrec neo4j stop; fi

clean:
	rm -rf $(VENV) *.egg-info
