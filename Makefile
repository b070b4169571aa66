# routemail: `make demo` and `make test` work on a fresh clone with only
# Python 3.11+ and make; they build .venv themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8025

.PHONY: demo test lint typecheck unit fuzz serve bench lambda-zip system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP) examples/serv.sqlite3
	$(BIN)/python examples/demo.py

# The example database behind the dynamic lists in examples/lists.toml; built aside and
# renamed so a resolver never opens a half-written file.
examples/serv.sqlite3: examples/serv.sql
	rm -f $@.tmp
	$(PYTHON) -c "import sqlite3, sys; db = sqlite3.connect(sys.argv[2]); db.executescript(open(sys.argv[1]).read()); db.close()" $< $@.tmp
	mv $@.tmp $@

# Debian packages the tests use (a CGI-capable web server for deploy/mailrecv.cgi,
# nginx for deploy/nginx.conf in front of the receiver, chromium for the browser
# test of the confirmation pages).
system-deps:
	@command -v lighttpd >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lighttpd >/dev/null; \
	  else echo "make: lighttpd is missing; install it (apt-get install lighttpd) to run the CGI test"; fi; }
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	  else echo "make: nginx is missing; install it (apt-get install nginx) to run the reverse-proxy test"; fi; }
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make: chromium is missing; install it (apt-get install chromium) to run the browser test"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Test files spread over JOBS processes (pytest-xdist); most tests wait on servers
# and subprocesses, so more processes than cores still shortens the run. JOBS=0 runs
# them in this one process.
JOBS ?= 4
unit: $(STAMP) system-deps examples/serv.sqlite3
	$(BIN)/pytest -n $(JOBS) --dist loadfile

test: lint typecheck unit

# The fuzz targets (tests/test_fuzz_*.py), the copy's properties and the hostile shapes,
# with FUZZ times the examples `make test` gives them (new ones each run, where `make
# test` repeats the same); failures are kept in .hypothesis/ and replayed first.
FUZZ ?= 100
fuzz: $(STAMP) examples/serv.sqlite3
	ROUTEMAIL_FUZZ=$(FUZZ) $(BIN)/pytest tests/test_fuzz_copy.py tests/test_fuzz_notices.py \
	  tests/test_fuzz_sidecar.py tests/test_fuzz_receiver.py tests/test_linear.py \
	  tests/test_copy_properties.py

serve: $(STAMP)
	$(BIN)/gunicorn -c deploy/gunicorn.conf.py --bind 127.0.0.1:$(PORT) mailrecv.wsgi:app

bench: $(STAMP)
	$(BIN)/python bench/receive.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/linear.py
	$(BIN)/python bench/slow_clients.py
	$(BIN)/python bench/wire.py
	$(BIN)/python bench/counting.py
	$(BIN)/python bench/duplicates.py
	$(BIN)/python bench/address_case.py
	$(BIN)/python bench/smtp_pacing.py
	$(BIN)/python bench/ses_rate.py
	$(BIN)/python bench/priority.py
	$(BIN)/python bench/delivery.py --memory

# The Lambda zip is mailxfer/ alone (the runtime provides boto3).
LAMBDA_BUILD ?= build/lambda
DIST ?= dist
lambda-zip:
	rm -rf $(LAMBDA_BUILD) $(DIST)/mailxfer.zip
	mkdir -p $(LAMBDA_BUILD) $(DIST)
	cp -r mailxfer $(LAMBDA_BUILD)/
	find $(LAMBDA_BUILD) -name __pycache__ -prune -exec rm -rf {} +
	cd $(LAMBDA_BUILD) && $(PYTHON) -m zipfile -c $(abspath $(DIST))/mailxfer.zip mailxfer
	@echo "$(DIST)/mailxfer.zip: handler mailxfer.handler"

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
