# Persona: everything runs through uv, installed into the project when missing.
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export BENTOML_DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := False

.PHONY: run test sync lint bench clean help spark-deps browser-deps

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras --compile-bytecode
	@touch $@

sync: .venv/.synced  ## install the locked environment

run: sync $(if $(filter spark,$(PERSONA_ENGINE)),spark-deps)  ## the main job: sample data, every stage, a live service answering
	$(UV) run --frozen persona run

# Two pytest-xdist workers (the machine's two cores); each test file runs whole on one worker, so a module's
# fixtures (a pipeline run, a service, the Spark session) are built once; files are handed out in the order
# tests/conftest.py sorts them (heaviest folders first). The 25 slowest steps are listed at the end.
PYTEST_WORKERS ?= 2
test: sync spark-deps browser-deps  ## the test suite (unit, data, model, integration, end to end)
	$(UV) run --frozen pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

lint: sync  ## ruff (errors and likely bugs) and the layer contracts (import-linter)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen lint-imports

bench: sync $(if $(filter spark,$(PERSONA_ENGINE)),spark-deps)  ## benchmarks (figures, not pass/fail)
	$(UV) run --frozen python -m bench

clean:  ## remove generated data (keeps the environment)
	rm -rf data

spark-deps:  ## Java 17 runtime for the Spark profile (PERSONA_ENGINE=spark) and the spark tests, when missing
	@command -v java >/dev/null || [ -n "$$JAVA_HOME" ] || \
		(apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless)

browser-deps:  ## headless Chromium (Debian's package) for the report and studio tests, when missing; Playwright downloads nothing
	@command -v chromium >/dev/null || \
		(apt-get update && apt-get install -y --no-install-recommends chromium)
