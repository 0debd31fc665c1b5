PYTHON ?= python3
export PYTHON

.PHONY: deps demo test bench bench-images bench-restore bench-exact bench-deps

deps:
	@bash scripts/deps.sh

demo: deps
	@bash scripts/demo.sh

# the linter first: a lint error fails the test run (and CI)
test: deps
	$(PYTHON) -m ruff check --no-cache diffimg tests bench
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

bench: deps bench-deps
	$(PYTHON) bench/bench_scan.py

bench-images: deps bench-deps
	$(PYTHON) bench/bench_images.py

bench-restore: deps bench-deps
	$(PYTHON) bench/bench_restore.py

bench-exact: deps bench-deps
	$(PYTHON) bench/bench_exact.py

# the peers the benchmarks measure against, and GNU time for peak memory
bench-deps:
	@command -v wimcapture >/dev/null && [ -x /usr/bin/time ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wimtools time >/dev/null)
