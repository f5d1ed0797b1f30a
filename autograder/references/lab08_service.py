"""Lab 08's references, shared by its two parts (``lab08a``, ``lab08b``): the two forests of the
notebook's set-up cell, retrained on the grader's inputs (each one's predictions on the grader's
rows, the load test's included), the
Kolmogorov-Smirnov statistics of the drift windows against the training split, and the grader's
own service settings (canary share, drift window, load-test size), drawn from the hidden seed
and never shipped with the kit's code."""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab08_service as lab08
from autograder.kit import labkit
from autograder.kit.i18n import _
from autograder.labspec import SandboxRunner, nonce_answer

#: The forests of the set-up cell, by the run that logs them.
FORESTS = {lab08.CHAMPION_RUN: {"n_estimators": 20, "max_depth": 6},
           lab08.CHALLENGER_RUN: {"n_estimators": 40, "max_depth": 10}}


def grader_settings(seed: int) -> tuple[float, int]:
    """The canary share (0.30-0.49) and drift window (35-64) the grader starts the service with:
    far from the notebook's defaults, and different for every hidden seed."""
    digest = hashlib.sha256(f"lab08-settings-{seed}".encode()).digest()
    return 0.30 + digest[0] % 20 / 100, 35 + digest[1] % 30


def grader_load_count(seed: int) -> int:
    """How many rows the grader's load test sends (100-139): not the notebook's LOAD_REQUESTS,
    so that records made for the notebook's count do not fit."""
    return 100 + hashlib.sha256(f"lab08-load-{seed}".encode()).digest()[0] % 40


@functools.lru_cache(maxsize=4)
def _split(data_path: str, seed: int, test_size: float) -> tuple[Any, Any]:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    x_train, _, y_train, _ = train_test_split(df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size,
                                              random_state=seed)
    return x_train, y_train


@functools.lru_cache(maxsize=4)
def _forests(data_path: str, seed: int, test_size: float) -> dict[str, Any]:
    from sklearn.ensemble import RandomForestRegressor

    x_train, y_train = _split(data_path, seed, test_size)
    return {run: RandomForestRegressor(**options, random_state=seed).fit(x_train, y_train)
            for run, options in FORESTS.items()}


def _ks(x_train: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
    import pandas as pd
    from scipy.stats import ks_2samp

    window = pd.DataFrame(rows)
    return {f: float(ks_2samp(x_train[f], window[f]).statistic) for f in labkit.FEATURES}


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs."""
    import pandas as pd

    seed, test_size = int(params["SEED"]), float(params["TEST_SIZE"])
    share, window = grader_settings(seed)
    x_train, _ = _split(str(data_path), seed, test_size)
    rows = lab08.drive_rows(data_path, seed, test_size, lab08.GRADER_TRAFFIC, window, grader_load_count(seed))
    load = pd.DataFrame(lab08.drive_rows(data_path, seed, test_size, int(params["LOAD_REQUESTS"]), 0)["traffic"],
                        columns=labkit.FEATURES)
    own = lab08.drive_rows(data_path, seed, test_size, lab08.SELF_TRAFFIC, int(params["DRIFT_WINDOW"]))
    frames = {"traffic": pd.DataFrame(rows["traffic"], columns=labkit.FEATURES),
              "rollback": pd.DataFrame(rows["rollback"][lab08.ROLLBACK_BEFORE:], columns=labkit.FEATURES),
              "load": pd.DataFrame(rows["load"], columns=labkit.FEATURES)}
    return {
        **lab08.expected_from_params(params),
        "share": share,
        "window": window,
        "role_predictions": {run: {part: [float(v) for v in model.predict(frame)] for part, frame in frames.items()}
                             for run, model in _forests(str(data_path), seed, test_size).items()},
        "load_predictions": {run: [float(v) for v in model.predict(load)]
                             for run, model in _forests(str(data_path), seed, test_size).items()},
        "ks": {"a": _ks(x_train, rows["drift_a"]), "b": _ks(x_train, rows["drift_b"])},
        "notebook_ks": {"a": _ks(x_train, own["drift_a"]), "b": _ks(x_train, own["drift_b"])},
    }


def run_code(ev: dict[str, Any], exp: dict[str, Any], data_path: Path, runner: SandboxRunner,
             drive: Mapping[str, Any] | None = None) -> None:
    """Start the submission's service in its sandbox and drive it with the grader's rows; add the
    raw answers to the evidence, and the expectations that depend on the registry (which version
    is which model) to ``exp``. ``drive``: what a part drives (the driver's job keys ``drift``,
    ``rollback``, ``load_test``, ``base``); everything, when None."""
    drive = dict(drive or {})
    by_role = lab08.newest_by_role((ev.get("registry") or {}).get("roles") or {})
    ev.setdefault("docker", {"text": None})
    if lab08.CHAMPION_RUN not in by_role or lab08.CHALLENGER_RUN not in by_role:
        ev["service"] = {"started": False, "error": _(
            "'{model}' has no versions from the runs '{champion}' and '{challenger}': run the set-up cell").format(
            model=exp["model_name"], champion=lab08.CHAMPION_RUN, challenger=lab08.CHALLENGER_RUN)}
        return
    # Swapped: the model of the challenger's run serves as champion.
    aliases = {lab08.CHAMPION: by_role[lab08.CHALLENGER_RUN], lab08.CHALLENGER: by_role[lab08.CHAMPION_RUN]}
    load = grader_load_count(int(exp["seed"])) if drive.get("load_test", True) else 0
    rows = lab08.drive_rows(data_path, int(exp["seed"]), float(exp["test_size"]), lab08.GRADER_TRAFFIC,
                            int(exp["window"]), load)
    nonce = secrets.token_hex(16)  # the driver's answer carries it; the service never sees it
    job = {"model_name": exp["model_name"], "aliases": aliases, "share": exp["share"], "window": exp["window"],
           "rows": rows, "nonce": nonce, "dockerfile": ev["docker"].get("text"), **drive}
    done = runner.run_kit("autograder.kit.lab08_serve", [], json.dumps(job).encode())
    answer = _answer(done.returncode, done.stdout, done.stderr, nonce)
    ev["service"] = answer.get("service") or {"started": False, "error": answer.get("error", "no answer")}
    ev["docker"]["hadolint"] = answer.get("hadolint") or {"error": answer.get("error", "no answer")}
    exp.update(aliases=aliases, rows=rows, predictions={
        version: exp["role_predictions"][role] for role, version in by_role.items()
        if role in exp["role_predictions"]})


def _answer(returncode: int | None, stdout: str, stderr: str, nonce: str) -> dict[str, Any]:
    return nonce_answer(returncode, stdout, stderr, nonce, _("driving the service"))

