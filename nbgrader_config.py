"""nbgrader's configuration for this course, for instructors who prefer nbgrader's own
tools (formgrader in JupyterLab, `nbgrader autograde`) to `python -m autograder`.

Masters live in solutions/ and the student versions in labs/, so nbgrader's "source" and
"release" folders are those two.
"""

import os
import sys
from pathlib import Path

from autograder.kit.labkit import sqlite_uri

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

ROOT = Path(__file__).resolve().parent
c.CourseDirectory.root = str(ROOT)  # absolute: a relative root makes nbgrader warn
c.CourseDirectory.course_id = "mlops-labs"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback-nbgrader"
c.CourseDirectory.db_url = sqlite_uri(ROOT / "gradebook.db")

# A deleted test cell is put back and run, as the course's own grader does.
c.OverwriteCells.add_missing_cells = True
# Generous limits: Lab notebooks train models and start an MLflow store.
c.ExecutePreprocessor.timeout = 120
# nbgrader fails a notebook whose kernel is slow to send its last output after a cell ends (4 s by
# default): on 2 busy cores, Lab 03b's set-up (cross-validating a 100-tree forest with n_jobs=-1)
# failed that way twice in a row; 60 s passed.
c.Execute.iopub_timeout = 60

# `nbgrader autograde` runs every submission in its own folder under autograded/, all from
# one process. Without this, every kernel would log to the same MLflow store, and a check
# could find another student's run. A relative sqlite URI gives each submission a store in
# its own folder. Only for autograde: JupyterLab (which also reads this file) keeps the
# course store that `make lab` sets.
if "autograde" in sys.argv[1:3]:
    os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///mlflow.db"
    # mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID (and a run MLFLOW_RUN_ID): inherited by
    # the kernels, an id from another store would send a submission's runs to the wrong place.
    for _name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        os.environ.pop(_name, None)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
