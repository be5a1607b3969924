# Two commands do everything on a fresh machine:
#   make book   create .venv, install mu_lib with the book tools, build the HTML book (every chapter executed)
#   make test   create .venv, install mu_lib with the test tools, run the tests (chapters run under MU_PROFILE=smoke)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[book,test]"
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	MU_PROGRESS=0 $(BIN)/jupyter-book build -W -n --keep-going --all .
	@echo "The book is at $(CURDIR)/_build/html/index.html"

test: $(STAMP)
	$(BIN)/ruff check mu_lib tests benchmarks
	$(BIN)/lint-imports
	MU_PROGRESS=0 $(BIN)/python -m pytest -n 2

clean:
	rm -rf _build .pytest_cache
