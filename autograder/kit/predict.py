"""``python -m autograder.kit.predict TRACKING_URI MODEL_URI < rows.json``: a logged model's
predictions, as one JSON line on stdout.

The grader runs this inside the submission's sandbox, never in its own process: loading a
logged model runs the model's code (a pickled ``pyfunc`` can do anything), so the most a
hostile model can do here is answer wrongly for itself.
"""

from __future__ import annotations

import json
import sys

from autograder.kit.checking import predictions, quiet


def main() -> None:
    tracking_uri, model_uri = sys.argv[1], sys.argv[2]
    rows = json.load(sys.stdin)
    with quiet():
        try:
            answer = {"predictions": predictions(tracking_uri, model_uri, rows)}
        except Exception as exc:  # the student's model failing is evidence, not a crash
            answer = {"prediction_error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    sys.stdout.write("\n" + json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
