# `make demo`: set up .venv (torch first, then the project) and pre-train + export on the bundled corpus.
# `make test`: set up .venv, run `make lint` (ruff, mypy) and the test suite; `make test-fast`: the suite without
# the end-to-end runs (-m "not slow") and without lint.
# `make bench`: set up .venv with the benchmark extra and run the benchmark suite (BENCH_ARGS=--quick: about 6 min).
# `make gpu-wheels gpu-data`: what scripts/gpu_check.sh needs on a GPU machine without network (.whl/, .gpu/);
# `make gpu-dry-run`: that script at toy sizes on the CPU (GPU_CHECK_QUICK=1 for gpu-data: the dry run's data).
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_RUN ?= runs/demo
export HF_HUB_OFFLINE := 1

.PHONY: demo test test-fast lint setup bench gpu-wheels gpu-data gpu-dry-run
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: 2.13.0 is a CPU build here; any other request would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[en,dev]"
	touch $@

demo: setup
	$(BIN)/ernie-cpt pretrain --output-dir $(DEMO_RUN) --overwrite --model-size tiny --max-steps 1200 \
		--learning-rate 1e-3 --eval-steps 200 --save-steps 600
	rm -rf $(DEMO_RUN)-export
	$(BIN)/ernie-cpt export $(DEMO_RUN) $(DEMO_RUN)-export
	@echo "Load it with: pipeline(\"fill-mask\", model=\"$(DEMO_RUN)-export\") or AutoModel.from_pretrained(...); see its README.md"

test: lint
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[en,dev,bench]"
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

gpu-wheels: setup
	$(BIN)/python -m scripts.gpu.wheelhouse --check

gpu-data: setup
	$(BIN)/python -m scripts.gpu.carry $(if $(filter 1,$(GPU_CHECK_QUICK)),--quick)

gpu-dry-run: setup
	GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 GPU_CHECK_SECONDS=1800 scripts/gpu_check.sh --out gpu-check-out
