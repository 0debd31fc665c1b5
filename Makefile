PYTHON ?= python3
export PYTHON

.PHONY: deps demo test bench bench-scan bench-images bench-restore bench-exact bench-ntfs bench-convert bench-deps bench-deploy bench-rebase

deps:
	@bash scripts/deps.sh

demo: deps
	@bash scripts/demo.sh

# the linter first: a lint error fails the test run (and CI)
test: deps
	$(PYTHON) -m ruff check --no-cache diffimg tests bench
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

# the whole suite: bench/results/latest.md, .json and .png (ENTRIES=100000 for the targets' size)
ENTRIES ?= 10000
bench: deps bench-deps
	$(PYTHON) bench/suite.py --entries $(ENTRIES)

bench-scan: deps bench-deps
	$(PYTHON) bench/bench_scan.py

bench-images: deps bench-deps
	$(PYTHON) bench/bench_images.py

bench-restore: deps bench-deps
	$(PYTHON) bench/bench_restore.py

bench-exact: deps bench-deps
	$(PYTHON) bench/bench_exact.py

bench-ntfs: deps bench-deps
	$(PYTHON) bench/bench_ntfs.py

bench-convert: deps bench-deps
	$(PYTHON) bench/bench_convert.py

# issue 15: a host layer carried onto a model update, against making a diff (bench/results/rebase.json)
bench-rebase: deps
	$(PYTHON) bench/bench_rebase.py --json bench/results/rebase.json

# the peers the benchmarks measure against, GNU time for peak memory, matplotlib for the chart
bench-deps:
	@command -v wimcapture >/dev/null && [ -x /usr/bin/time ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wimtools time >/dev/null)
	@$(PYTHON) -c "import matplotlib" 2>/dev/null || \
	  $(PYTHON) -m pip install -q --disable-pip-version-check matplotlib

# issue 14's classroom: a server and CLIENTS clients in network namespaces (bench/results/deploy.json)
CLIENTS ?= 32
bench-deploy: deps
	timeout 3600 $(PYTHON) bench/bench_deploy.py --clients $(CLIENTS)
