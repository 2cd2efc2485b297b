# dynacron: `make demo` runs the whole system locally with a sample workload; `make test` runs
# every check. Both set themselves up (a .venv for the project, .tools for aws-sam-cli and
# .ministack for the emulated AWS the deploy test uses: both pin dependencies that would clash
# with the project's own).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := .tools
SAM    := $(TOOLS)/bin/sam
MINI   := .ministack
# The emulated AWS of the deploy test; aws-sam-translator lets its CloudFormation run SAM templates.
MINISTACK_PKGS := 'ministack==1.5.33' 'aws-sam-translator>=1.90' 'boto3'
BUILT  := .aws-sam/build
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install browser test lint typecheck unit template build deploy-test demo bench clean

install: $(BIN)/.installed browser

# The dashboard's test drives Debian's chromium through chromedriver (selenium): no browser is
# downloaded at test time. Installed once with apt-get when missing (CI and the dev machines run
# as root); elsewhere it says what to install, and the browser test skips (it fails under CI).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	if [ "$$(id -u)" = 0 ]; then \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			chromium chromium-driver) >/dev/null; \
	else \
		echo "browser: install chromium and chromium-driver for the dashboard's browser test"; \
	fi

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(SAM):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --upgrade pip
	$(TOOLS)/bin/python -m pip install -q 'aws-sam-cli>=1.120,<2'

$(MINI)/.installed: Makefile
	test -x $(MINI)/bin/python || $(PYTHON) -m venv $(MINI)
	$(MINI)/bin/python -m pip install -q --upgrade pip
	$(MINI)/bin/python -m pip install -q $(MINISTACK_PKGS)
	touch $@

lint: install
	$(BIN)/ruff check .

# mypy on functions/dynacron (settings in pyproject.toml's [tool.mypy]); clean, so part of test.
typecheck: install
	$(BIN)/mypy

template: install $(SAM)
	$(BIN)/cfn-lint template.yaml
	$(SAM) validate --lint
	$(SAM) validate --region us-east-1
	$(MAKE) --no-print-directory build >/dev/null
	test -f $(BUILT)/WorkerFunction/dynacron/handlers/__pycache__/worker.cpython-311.pyc
	@echo "template: cfn-lint, sam validate --lint, sam validate, sam build + bytecode: ok"

# `sam build`, then bytecode for everything in the two functions' packages. Lambda's /var/task
# is read-only, so Python cannot cache what it compiles: without this, every cold start compiles
# dynacron, PynamoDB, Powertools and botocore from source. unchecked-hash .pyc files are used
# whatever the files' timestamps in the zip; -f rewrites them all on every build.
build: install $(SAM)
	$(SAM) build --build-dir $(BUILT) --cached --cache-dir .aws-sam/cache
	$(BIN)/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash \
		$(BUILT)/PollerFunction $(BUILT)/WorkerFunction

unit: install
	$(BIN)/python -m pytest

# sam deploy of a fresh build onto ministack with IAM enforced; the SDK and CLI drive the stack.
deploy-test: build $(MINI)/.installed
	$(BIN)/python -m pytest tests/deploy

test: lint typecheck template unit deploy-test

demo: install
	$(BIN)/dynacron local --demo

bench: install build
	$(BIN)/python -m bench.run

# The burst benchmark alone (ministack; B runs due at one second + 50 canaries); `make bench`
# runs it at 20k/50k/100k (BURST_SIZES overrides, e.g. 20000 on a busy machine), then
# bench.simulate calibrated by it. bench-crash / bench-scaling: crash recovery, 1/2/4 pollers.
# bench-simulate: the model again from the burst runs in latest.json + the worker's CPU now.
.PHONY: bench-burst bench-crash bench-scaling bench-simulate
BURST_SIZES ?= 20000,50000,100000
bench-burst: install
	$(BIN)/python -m bench.burst --sizes $(BURST_SIZES)
bench-crash: install
	$(BIN)/python -m bench.crash
bench-scaling: install
	$(BIN)/python -m bench.scaling
bench-simulate: install
	$(BIN)/python -m bench.run --only simulate --merge

clean:
	rm -rf $(VENV) $(TOOLS) $(MINI) .aws-sam build *.egg-info functions/*.egg-info
