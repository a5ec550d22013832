# `make demo`: set up .venv (torch first, then the project) and pre-train + export on the bundled corpus.
# `make test`: set up .venv, run `make lint` (ruff, mypy), build the docs and run the test suite; `make test-fast`: the suite without
# the end-to-end runs (-m "not slow") and without lint. Both run the suite in parallel processes (pytest-xdist): one a
# CPU, at most 4; PYTEST_WORKERS=0 runs it in one process.
# `make bench`: set up .venv with the benchmark extra and run the benchmark suite (BENCH_ARGS=--quick: about 6 min).
# `make docs`: build the documentation site into site/ with `mkdocs build --strict` (part of `make test`).
# `make gpu-wheels gpu-data`: what scripts/gpu_check.sh needs on a GPU machine without network (.whl/, .gpu/);
# `make gpu-dry-run`: that script at toy sizes on the CPU (GPU_CHECK_QUICK=1 for gpu-data: the dry run's data).
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_RUN ?= runs/demo
export HF_HUB_OFFLINE := 1
export NO_MKDOCS_2_WARNING := 1
PYTEST_WORKERS ?= auto
PARALLEL = -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder

.PHONY: demo test test-fast lint setup bench docs gpu-wheels gpu-data gpu-dry-run
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: 2.13.0 is a CPU build here; any other request would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[en,dev,docs]"
	touch $@

demo: setup
	$(BIN)/ernie-cpt pretrain --output-dir $(DEMO_RUN) --overwrite --model-size tiny --max-steps 1200 \
		--learning-rate 1e-3 --eval-steps 200 --save-steps 600
	rm -rf $(DEMO_RUN)-export
	$(BIN)/ernie-cpt export $(DEMO_RUN) $(DEMO_RUN)-export
	@echo "Load it with: pipeline(\"fill-mask\", model=\"$(DEMO_RUN)-export\") or AutoModel.from_pretrained(...); see its README.md"
	@echo "The demo model is tiny (0.9M parameters, 38,000 words of text): it fills a blank with a frequent word"
	@echo "such as 'the'. For a useful model see docs/tutorials (make docs builds the site into site/)."

test: setup lint docs
	$(BIN)/python -m pytest -q --durations=25 $(PARALLEL)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PARALLEL)

bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[en,dev,docs,bench]"
	touch $@

docs: setup
	$(BIN)/mkdocs build --strict --site-dir site

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

gpu-wheels: setup
	$(BIN)/python -m scripts.gpu.wheelhouse --check

gpu-data: setup
	$(BIN)/python -m scripts.gpu.carry $(if $(filter 1,$(GPU_CHECK_QUICK)),--quick)

gpu-dry-run: setup
	GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 GPU_CHECK_SECONDS=1800 scripts/gpu_check.sh --out gpu-check-out
