"""Lab 04 references: the two forests of the notebook's given training cell, retrained on the
grader's inputs: each one's test RMSE (what TODO 3 logs for the challenger, the chosen model) and its predictions
on rows of the grader's own (what the champion's server must answer in TODO 6)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab04, labkit
from autograder.kit.i18n import _
from autograder.labspec import RUN_TIMEOUT, LabSpec, SandboxRunner

#: Rows of the hidden test split sent to the champion's server.
SERVE_ROWS = 20


@functools.lru_cache(maxsize=4)
def _models(data_path: str, seed: int, test_size: float, in_service: str, winner: str) -> tuple[dict[str, Any], Any, Any]:
    """The notebook's two forests, trained as its given cell trains them; and the test split."""
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    X_train, X_test, y_train, y_test = train_test_split(
        df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size, random_state=seed
    )
    models = {
        in_service: RandomForestRegressor(n_estimators=10, max_depth=4, random_state=seed, n_jobs=-1),
        winner: RandomForestRegressor(n_estimators=60, max_depth=12, random_state=seed, n_jobs=-1),
    }
    for model in models.values():
        model.fit(X_train, y_train)
    return models, X_test, y_test


def _key(data_path: Path | str, params: Mapping[str, Any]) -> tuple[str, int, float, str, str]:
    return (str(data_path), int(params["SEED"]), float(params["TEST_SIZE"]), str(params["IN_SERVICE_RUN"]),
            str(params["WINNER_RUN"]))


def _predict(model: Any, rows: list[dict[str, Any]]) -> list[float]:
    import pandas as pd

    return [float(v) for v in model.predict(pd.DataFrame(rows, columns=labkit.FEATURES).astype(float))]


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs."""
    import numpy as np

    models, X_test, y_test = _models(*_key(data_path, params))
    rmse = {
        role: float(math.sqrt(np.mean((model.predict(X_test) - y_test.to_numpy()) ** 2)))
        for role, model in models.items()
    }
    rows = X_test.head(SERVE_ROWS)
    return {
        **lab04.expected_from_params(params),
        "rmse": rmse,
        "serve_rows": [int(i) for i in rows.index],
        "serve_predictions": {role: [float(v) for v in model.predict(rows)] for role, model in models.items()},
    }


def run_code(ev: dict[str, Any], exp: Mapping[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """TODO 6: the champion's expected answer to the rows the notebook sent (the reference
    forest of the champion's role: no model of the submission is loaded here), and the
    answer of a server started, inside the sandbox, from the command the notebook recorded."""
    serving = ev.get("serving") or {}
    if not serving.get("file") or not serving.get("command"):
        return
    registry = ev.get("registry") or {}
    roles = {v["version"]: v["role"] for v in registry.get("versions", [])}
    role = roles.get((registry.get("aliases") or {}).get(lab04.CHAMPION))
    params = {"SEED": exp["seed"], "TEST_SIZE": exp["test_size"], "IN_SERVICE_RUN": exp["in_service"],
              "WINNER_RUN": exp["winner"]}
    models, _, _ = _models(*_key(data_path, params))
    if serving.get("request_rows") and role in models:
        serving["recorded_expected"] = _predict(models[role], serving["request_rows"])
    import pandas as pd

    rows = pd.read_csv(data_path).loc[exp["serve_rows"], labkit.FEATURES].to_dict("records")
    kind = next((k for k in serving.get("request_keys", []) if k in lab04.REQUEST_FORMATS), None)
    job = {"command": serving["command"], "rows": rows, "format": kind}
    done = runner.run_kit("autograder.kit.lab04_serve", [], json.dumps(job).encode())
    serving["served"] = _answer(done.returncode, done.stdout, done.stderr, len(rows))


def _answer(returncode: int | None, stdout: str, stderr: str, count: int) -> dict[str, Any]:
    if returncode is None:
        return {"serve_error": _("serving took longer than {seconds} s").format(seconds=f"{RUN_TIMEOUT:g}")}
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    try:
        answer = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = stderr.strip().splitlines()[-1:] or [_("no answer")]
        return {"serve_error": tail[0][:300]}
    values = answer.get("predictions")
    if isinstance(values, list) and len(values) == count and all(
        isinstance(v, int | float) and math.isfinite(v) for v in values
    ):
        return {"predictions": [float(v) for v in values]}
    return {"serve_error": str(answer.get("serve_error", _("not one number per row")))[:300]}


SPEC = LabSpec(lab=lab04, expected=expected, run_code=run_code, store_extras=lab04.STORE_EXTRAS)
