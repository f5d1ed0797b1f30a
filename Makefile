# Every user-facing command of the course. `make help` lists them.
# Works from a fresh clone: targets that need the environment create it first.

PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 5000
JUPYTER_PORT ?= 8888
NB     ?=
SUBMISSIONS ?= submitted
OUT    ?= grading
LAB    ?=
# Instructor options (issue #15): each is passed on only when set.
ROSTER ?=
SECRET ?=
POLICY ?=
EXTENSIONS ?=
STUDENT ?=
CHECK  ?=
WHY    ?=
# Issue #14: the class server's folder and address, and a Dask scheduler to grade on.
DATA   ?= class-server
HOST   ?= 127.0.0.1
SCHEDULER ?=
# Issue #16: the course's language (en, es): the edition `make lab` opens, and its interface.
COURSE_LANG ?=
LANG_OPT = $(if $(COURSE_LANG),--lang "$(COURSE_LANG)",)
CLASS_OPTS = $(if $(ROSTER),--roster "$(ROSTER)",) $(if $(SECRET),--variants "$(SECRET)",) \
  $(if $(POLICY),--late-policy "$(POLICY)",) $(if $(EXTENSIONS),--extensions "$(EXTENSIONS)",)

ifeq ($(OS),Windows_NT)
BIN := $(VENV)/Scripts
else
BIN := $(VENV)/bin
endif
PY := $(BIN)/python
# nbgrader calls `alembic` and `mlflow models serve` calls `uvicorn` by name: the venv's
# bin/ must be on PATH even when nobody activated it.
export PATH := $(abspath $(BIN))$(if $(filter Windows_NT,$(OS)),;,:)$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK := true

STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup lab lab-instructor mlflow labs check grade-class release test test-fast bench data lint clean \
  secret release-students similarity regrade export class-server

help: ## List the commands
	@echo "Usage: make TARGET"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "  make check NB=labs/01_tracking/01_tracking.ipynb   grade one notebook"
	@echo "  make lab PORT=5001 JUPYTER_PORT=8889              other ports for the UI and JupyterLab"
	@echo "  make lab COURSE_LANG=es                           the Spanish edition, in a Spanish JupyterLab"
	@echo "  make grade-class SUBMISSIONS=path OUT=grading     grade nbgrader's submitted/, a folder or a zip"

setup: $(STAMP) ## Create .venv and install the pinned environment (once)

$(STAMP): requirements.txt pyproject.toml
	@echo "==> Creating $(VENV) and installing pinned packages (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install --progress-bar on -r requirements.txt -e .
	@touch $(STAMP)
	@echo "==> Ready. Next: make lab"

lab: setup ## Open JupyterLab on the labs, with the MLflow UI on the same store
	@$(PY) -m autograder.launch lab --port $(PORT) --jupyter-port $(JUPYTER_PORT) $(LANG_OPT)

lab-instructor: setup ## The same, with nbgrader's instructor tools (formgrader, Create Assignment)
	@$(PY) -m autograder.launch lab --port $(PORT) --jupyter-port $(JUPYTER_PORT) --instructor $(LANG_OPT)

mlflow: setup ## Start only the MLflow UI on the course store (PORT=5000)
	@$(PY) -m autograder.launch ui --port $(PORT)

labs: setup ## Regenerate labs/ and the Spanish edition (labs/es/, solutions/es/) from the masters
	$(PY) -m autograder generate

check: setup ## Grade one notebook: make check NB=path/to/notebook.ipynb
	@if [ -z "$(NB)" ]; then echo "usage: make check NB=labs/01_tracking/01_tracking.ipynb"; exit 2; fi
	$(PY) -m autograder grade --own "$(NB)"

grade-class: setup ## Grade a class: make grade-class SUBMISSIONS=submitted OUT=grading [ROSTER= SECRET= POLICY= EXTENSIONS=]
	$(PY) -m autograder class "$(SUBMISSIONS)" --out "$(OUT)" $(CLASS_OPTS) $(if $(SCHEDULER),--scheduler "$(SCHEDULER)",)

release: setup ## Build one student bundle per language: dist/student-bundle.zip, dist/student-bundle-es.zip (LAB=, COURSE_LANG=)
	$(PY) -m autograder release $(if $(LAB),--lab $(LAB),) $(LANG_OPT)

secret: setup ## Create the instructor secret for per-student variants: make secret SECRET=instructor-secret.txt
	@if [ -z "$(SECRET)" ]; then echo "usage: make secret SECRET=path/to/instructor-secret.txt"; exit 2; fi
	$(PY) -m autograder variants --init "$(SECRET)"

release-students: setup ## One bundle per student, own variant: make release-students ROSTER=roster.csv SECRET=...
	@if [ -z "$(ROSTER)" ] || [ -z "$(SECRET)" ]; then echo "usage: make release-students ROSTER=roster.csv SECRET=instructor-secret.txt"; exit 2; fi
	$(PY) -m autograder release --roster "$(ROSTER)" --variants "$(SECRET)" $(if $(LAB),--lab $(LAB),) $(LANG_OPT)

similarity: setup ## Pairs with suspiciously similar TODO code: make similarity SUBMISSIONS=submitted OUT=grading
	$(PY) -m autograder similarity "$(SUBMISSIONS)" --out "$(OUT)"

regrade: setup ## Regrade: make regrade LAB=01_tracking STUDENT=alice (or CHECK=check_id) WHY="..."
	@if [ -z "$(LAB)" ] || [ -z "$(WHY)" ] || [ -z "$(STUDENT)$(CHECK)" ]; then echo 'usage: make regrade LAB=01_tracking STUDENT=alice WHY="reason" (or CHECK=check_todo3_metrics instead of STUDENT)'; exit 2; fi
	$(PY) -m autograder regrade "$(SUBMISSIONS)" --out "$(OUT)" --lab "$(LAB)" --why "$(WHY)" \
	  $(if $(STUDENT),--student "$(STUDENT)",--check "$(CHECK)") $(CLASS_OPTS)

class-server: setup ## The class's MLflow server (PostgreSQL, a login and workspace per student): make class-server ROSTER=roster.csv [HOST=0.0.0.0 PORT=5000 DATA=class-server]
	@if [ -z "$(ROSTER)" ]; then echo "usage: make class-server ROSTER=roster.csv [HOST=0.0.0.0 PORT=5000 DATA=class-server]"; exit 2; fi
	@$(PY) -m autograder class-server --roster "$(ROSTER)" --data "$(DATA)" --host $(HOST) --port $(PORT)

export: setup ## Rewrite grades, feedback and the Canvas/Moodle/Gradescope exports of OUT (no grading)
	$(PY) -m autograder export "$(SUBMISSIONS)" --out "$(OUT)" $(CLASS_OPTS)

# One pytest worker per core (pytest-xdist); each distinct notebook is graded once per session
# and the result shared between workers (tests/conftest.py).
test: setup ## Run the course's test suite (executes and grades every lab; about 15 minutes on 2 cores)
	$(PY) -m pytest -n auto --dist worksteal

test-fast: setup ## Only the tests that execute no notebook (under 2 minutes, for the edit-test loop)
	$(PY) -m pytest -n auto -m "not slow"

bench: setup ## Time the grader: vs a bare papermill run, a class vs nbgrader autograde, Dask vs the process pool
	$(PY) benchmarks/grade_vs_papermill.py
	$(PY) benchmarks/class_vs_nbgrader.py
	$(PY) benchmarks/class_dask_vs_pool.py

data: setup ## Regenerate data/ from data/make_data.py (deterministic)
	$(PY) data/make_data.py

lint: setup ## ruff on the code and the notebooks
	$(BIN)/ruff check .

clean: ## Remove the course store, grader output and caches (keeps .venv)
	rm -rf mlflow-store feedback dist .pytest_cache .ruff_cache
