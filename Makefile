# Two commands do everything on a fresh machine:
#   make book   create .venv, install mu_lib with the book tools, build the HTML book (every chapter executed)
#   make test   create .venv, install mu_lib with the test tools, run the tests (every chapter runs under
#               MU_PROFILE=smoke and gpu_smoke, the gpu code path on the CPU; Ray on a local cluster)
# For teaching (README, "In the classroom"):
#   make assignments   the student and autograder bundles of assignments/ under _build/assignments/
#   make grade-check   grade each reference solution (full marks) and blank student notebook (less), no Docker
#   make book-student  the book without solutions, under _build/student/_build/html (reuses the execution cache)
#   make book-check    open every page of _build/html in headless Chromium and check what a reader sees
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CLASSROOM := $(VENV)/.classroom

.PHONY: book test install clean assignments grade-check book-student book-check chromium

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[book,test]"
	touch $(STAMP)

install: $(STAMP)

$(CLASSROOM): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[book,test,classroom]"
	touch $(CLASSROOM)

book: $(STAMP)
	MU_PROGRESS=0 $(BIN)/jupyter-book build -W -n --keep-going --all .
	@echo "The book is at $(CURDIR)/_build/html/index.html"

test: $(STAMP)
	$(BIN)/ruff check mu_lib tests benchmarks tools assignments/build.py assignments/grade_check.py
	$(BIN)/ruff check book  # the chapters' code, lines of at most 88 characters (book/ruff.toml)
	$(BIN)/lint-imports
	MU_PROGRESS=0 MU_PRECISION= $(BIN)/python -m pytest -n 2 --dist worksteal

assignments: $(CLASSROOM)
	$(BIN)/python assignments/build.py

grade-check: assignments
	MU_PROGRESS=0 $(BIN)/python assignments/grade_check.py

book-student: $(STAMP)
	$(BIN)/python tools/student_edition.py config
	MU_PROGRESS=0 $(BIN)/jupyter-book build -W -n --keep-going --all --config _build/student/_config.yml \
		--path-output _build/student .
	$(BIN)/python tools/student_edition.py check _build/student/_build/html
	@echo "The student edition is at $(CURDIR)/_build/student/_build/html/index.html"

# Debian's Chromium and ChromeDriver (root installs them; nothing else is downloaded).
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

book-check: $(CLASSROOM) chromium
	$(BIN)/python tools/book_check.py _build/html --min-explorers 3

clean:
	rm -rf _build .pytest_cache
