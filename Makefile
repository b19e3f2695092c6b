# armor-ab: `make demo` and `make test` work on a fresh machine (they create .venv themselves).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_WHEEL := $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl)
# The CPU wheel of torch; an unpinned install would pull a multi-GB CUDA build.
TORCH := $(if $(TORCH_WHEEL),$(TORCH_WHEEL),torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)

.PHONY: install demo test test-fast lint bench clean system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The browser the browser tests drive (tests/test_web_e2e.py, tests/test_dashboard_browser.py), the
# JavaScript runtime that checks the snippet (tests/test_web_snippet.py), and the Prometheus tool that checks
# and unit-tests the alert rules (tests/test_alerts.py, deploy/prometheus/).
CHROMIUM := /usr/bin/chromium
NODE := /usr/bin/node
PROMTOOL := /usr/bin/promtool
# Spark (the warehouse tests run the report on pyspark in local mode) needs a Java runtime.
JAVA := /usr/bin/java

# System packages the tests need (Debian's Chromium, Node.js and Prometheus): nothing to do when present,
# installed as root, and a failure (not a skip later) when one is missing and cannot be installed here.
system-deps:
	@pkgs=""; [ -x "$(CHROMIUM)" ] || pkgs="chromium"; [ -x "$(NODE)" ] || pkgs="$$pkgs nodejs"; \
	[ -x "$(PROMTOOL)" ] || pkgs="$$pkgs prometheus"; [ -x "$(JAVA)" ] || pkgs="$$pkgs openjdk-17-jre-headless"; \
	pkgs="$${pkgs# }"; \
	if [ -n "$$pkgs" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && apt-get install -y -q $$pkgs || { echo "system-deps: installing $$pkgs failed" >&2; exit 1; }; \
	  else \
	    echo "system-deps: $$pkgs missing ($(CHROMIUM), $(NODE), $(PROMTOOL), $(JAVA)) and installing needs root: run 'sudo apt-get install -y $$pkgs' (or 'sudo make system-deps'), then make test again" >&2; \
	    exit 1; \
	  fi; \
	  [ -x "$(CHROMIUM)" ] || { echo "system-deps: chromium was installed but $(CHROMIUM) is still missing" >&2; exit 1; }; \
	  [ -x "$(NODE)" ] || { echo "system-deps: nodejs was installed but $(NODE) is still missing" >&2; exit 1; }; \
	  [ -x "$(PROMTOOL)" ] || { echo "system-deps: prometheus was installed but $(PROMTOOL) is still missing" >&2; exit 1; }; \
	  [ -x "$(JAVA)" ] || { echo "system-deps: openjdk-17-jre-headless was installed but $(JAVA) is still missing" >&2; exit 1; }; \
	fi

demo: install
	$(BIN)/python -m armor_ab.devtools.demo

# The browser, snippet and alert-rule tests fail instead of skipping when Chromium, Node.js or promtool is
# missing (ARMOR_AB_REQUIRE_BROWSER).
test: install system-deps
	ARMOR_AB_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: failing" >&2; exit 1; fi; exit $$rc

test-fast: install system-deps
	ARMOR_AB_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .armor_ab engine/build .pytest_cache
