"""``python -m autograder.kit.predict < job.json``: a logged model's predictions, as one JSON
line on stdout. The job is ``{"tracking_uri": ..., "model_uri": ..., "rows": [{...}, ...]}``.

The grader runs this inside the submission's sandbox, never in its own process: loading a
logged model runs the model's code (a pickled ``pyfunc`` can do anything), so the most a
hostile model can do here is answer wrongly for itself. The grader starts it while the
notebook still runs: the imports below are paid then, and the job arrives on stdin once the
notebook has ended.
"""

from __future__ import annotations

import json
import sys

import mlflow.pyfunc  # noqa: F401  (imported ahead, while the process waits for its job)
import mlflow.sklearn  # noqa: F401  (the course's models are scikit-learn ones, saved with skops)
import pandas  # noqa: F401
import sklearn.ensemble  # noqa: F401
import skops.io  # noqa: F401

from autograder.kit.checking import predictions, quiet


def main() -> None:
    job = json.load(sys.stdin)
    with quiet():
        try:
            answer = {"predictions": predictions(job["tracking_uri"], job["model_uri"], job["rows"])}
        except Exception as exc:  # the student's model failing is evidence, not a crash
            answer = {"prediction_error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    sys.stdout.write("\n" + json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
