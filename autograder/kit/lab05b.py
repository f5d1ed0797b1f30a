"""Lab 05b, the CI/CD pipeline: the promotion (TODO 1) and the GitHub Actions workflow (TODO 2),
run on this machine with the course's workflow runner. The evidence and judgments are Lab 05's
(``lab05``), shared with Lab 05a; this module says which files and checks are this part's, and
puts the pipeline's other three programs in place.

Those three programs (data validation, behavioural tests, quality gate) are Lab 05a's work. The
set-up copies the student's own from Lab 05a's folder when they are there and done; otherwise it
writes **stand-ins** that pass or fail on cue (a list the set-up writes), so that Lab 05b stands
alone: at grading, in a fresh folder, the stand-ins run. They hold none of Lab 05a's answers:
the data validation and the gate look at no data and measure nothing, and the tests are the
one test Lab 05a gives. Neither TODO of Lab 05b is judged on them: the promotion runs on the
grader's cases, and the workflow with probes in their place (``lab05_run.probe_run``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from autograder.kit import lab05
from autograder.kit.lab05 import (  # noqa: F401
    DATA_SCRIPT,
    GATE_SCRIPT,
    MESSAGES,
    PARAMS,
    PROMOTE_SCRIPT,
    TEST_FILE,
    WORKFLOW,
    Part,
)
from autograder.kit.lab05_run import STUB

LAB = "05b_pipeline"
PART = Part(
    lab=LAB,
    todos={PROMOTE_SCRIPT: 1, WORKFLOW: 2},
    checks={
        "check_todo1_promote": (1, lab05.judge_promote),
        "check_todo2_workflow": (2, lab05.judge_workflow),
    },
)
CHECKS = PART.checks
evidence = PART.evidence
expected_from_params = PART.expected_from_params

#: Where the stand-ins read their cues (relative to the lab's folder).
CUES = "pipeline/stand-in-cues.json"
_CUES_READER = """import json
import sys
from pathlib import Path

CUES = json.loads(Path(__file__).with_name("stand-in-cues.json").read_text())
"""
STANDINS = {
    DATA_SCRIPT: '''"""Stand-in for Lab 05a's data validation (yours was not found there, or its TODO is not done).

It does not look at the data: it rejects the batches the set-up listed as broken and accepts
any other, so that the pipeline has a first step that passes or fails on cue.
"""
''' + _CUES_READER + '''
batch = Path(sys.argv[1]).name
if batch in CUES["rejected_batches"]:
    print(f"stand-in data validation: REJECTED {batch} (the set-up listed it as broken)")
    sys.exit(1)
print(f"stand-in data validation: ACCEPTED {batch}")
''',
    GATE_SCRIPT: '''"""Stand-in for Lab 05a's quality gate (yours was not found there, or its TODO is not done).

It measures nothing: it passes the versions the set-up listed (the candidate, which passed
the real gate) and fails any other, so that the pipeline has a gate that passes or fails on cue.
"""
''' + _CUES_READER + '''
version = sys.argv[sys.argv.index("--version") + 1] if "--version" in sys.argv[:-1] else None
if version not in CUES["passed_versions"]:
    print(f"stand-in quality gate: FAILED version {version} (not among the versions the set-up listed)")
    sys.exit(1)
print(f"stand-in quality gate: PASSED version {version}")
''',
    TEST_FILE: '''"""Stand-in for Lab 05a's behavioural tests (yours were not found there, or the TODO is not
done): the one test Lab 05a gives, on the model named by the environment variable MODEL_URI."""
import os

import mlflow
import numpy as np
import pandas as pd
import pytest

#: Four typical five-minute readings, from a quiet server to a busy one.
TYPICAL = pd.DataFrame(
    {
        "cpu_usage": [25.0, 45.0, 60.0, 75.0],
        "memory_usage": [35.0, 50.0, 55.0, 65.0],
        "disk_io": [10.0, 25.0, 40.0, 60.0],
        "network_latency": [15.0, 22.0, 30.0, 45.0],
        "concurrent_users": [60, 150, 250, 400],
    }
)


@pytest.fixture(scope="module")
def model():
    return mlflow.pyfunc.load_model(os.environ["MODEL_URI"])


def test_minimum_functionality(model):
    predicted = np.asarray(model.predict(TYPICAL), dtype=float).ravel()
    assert np.isfinite(predicted).all()
    assert ((predicted > 20) & (predicted < 5000)).all(), predicted
''',
}


def pipeline_programs(lab05a: Path, passed_versions: list[str], rejected_batches: list[str]) -> dict[str, str]:
    """Put the pipeline's three Lab 05a programs in ``pipeline/``: the student's own, copied from
    ``lab05a/pipeline/`` when there and done, else a stand-in. Returns file -> where it came from."""
    Path("pipeline").mkdir(exist_ok=True)
    Path(CUES).write_text(json.dumps({"passed_versions": [str(v) for v in passed_versions],
                                      "rejected_batches": [Path(b).name for b in rejected_batches]}), encoding="utf-8")
    found: dict[str, str] = {}
    for rel, standin in STANDINS.items():
        own = Path(lab05a) / rel
        try:
            done = own.is_file() and STUB not in own.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            done = False
        if done:
            shutil.copyfile(own, rel)
            found[rel] = lab05._msg("program_yours", source=own.as_posix())
        else:
            Path(rel).write_text(standin, encoding="utf-8")
            found[rel] = lab05._msg("program_standin")
    return found


def self_check(check_id: str, namespace: Any) -> None:
    """A test cell's self-check (see ``lab05.Part.self_check``)."""
    PART.self_check(check_id, namespace)
