# dynacron: `make demo` runs the whole system locally with a sample workload; `make test` runs
# every check. Both set themselves up (a .venv for the project, .tools for aws-sam-cli, whose
# pinned dependencies would clash with the project's own).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := .tools
SAM    := $(TOOLS)/bin/sam
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install test lint unit template demo bench clean

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(SAM):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --upgrade pip
	$(TOOLS)/bin/python -m pip install -q 'aws-sam-cli>=1.120,<2'

lint: install
	$(BIN)/ruff check .

template: install $(SAM)
	$(BIN)/cfn-lint template.yaml
	$(SAM) validate --lint
	$(SAM) validate --region us-east-1
	$(SAM) build --build-dir .aws-sam/build --cached --cache-dir .aws-sam/cache >/dev/null
	@echo "template: cfn-lint, sam validate --lint, sam validate, sam build: ok"

unit: install
	$(BIN)/python -m pytest

test: lint template unit

demo: install
	$(BIN)/dynacron local --demo

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam build *.egg-info functions/*.egg-info
