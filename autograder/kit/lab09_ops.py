"""Lab 09's operations, one command per step of the scheduled retraining workflow (given).

The notebook copies this file to ``lab09-governance/ops.py``; the student's workflow calls it::

    python lab09-governance/ops.py drift    --batch FILE                  -> output drifted=true|false
    python lab09-governance/ops.py retrain  --batch FILE                  -> output run_id=...
    python lab09-governance/ops.py promote  --run RUN_ID                  -> outputs version=..., previous=...
    python lab09-governance/ops.py verify   --version V --max-rmse X       (exit 1: the release gate fails)
    python lab09-governance/ops.py rollback --to VERSION --reason TEXT

Outputs go to ``$GITHUB_OUTPUT`` (the runner's, or GitHub's). Every command talks to the
MLflow server in ``$MLFLOW_TRACKING_URI`` as the user in ``$MLFLOW_TRACKING_USERNAME``: the
server decides what that user may do. ``retrain`` trains on the course data plus the batch;
``promote`` registers the run's model, attaches a model card, moves ``@champion`` to it and logs
the audit event (the kit's own promotion: writing one is Lab 09a's Task 3); ``rollback`` moves
``@champion`` back and logs the audit event.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

MODEL_NAME = os.environ.get("MODEL_NAME", "lab09-response-time")
EXPERIMENT_NAME = os.environ.get("EXPERIMENT_NAME", "lab09-training")
AUDIT_EXPERIMENT = os.environ.get("AUDIT_EXPERIMENT", "lab09-audit-log")
FEATURES = ["cpu_usage", "memory_usage", "disk_io", "network_latency", "concurrent_users"]
TARGET = "response_time_ms"
#: Below this p-value (two-sample Kolmogorov-Smirnov, any feature) the batch has drifted.
DRIFT_P = 0.01


def output(**values: object) -> None:
    """Step outputs, as GitHub Actions reads them (and printed, for the log)."""
    lines = "".join(f"{k}={v}\n" for k, v in values.items())
    print(lines, end="")
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(lines)


def training_data():
    import pandas as pd

    return pd.read_csv(os.environ["TRAINING_DATA"])


def drift(batch: str) -> None:
    import pandas as pd
    from scipy.stats import ks_2samp

    reference, recent = training_data(), pd.read_csv(batch)
    pvalues = {f: float(ks_2samp(reference[f], recent[f]).pvalue) for f in FEATURES}
    worst = min(pvalues, key=pvalues.get)
    print(f"smallest KS p-value: {worst} {pvalues[worst]:.2e}")
    output(drifted="true" if pvalues[worst] < DRIFT_P else "false")


def _split(frame):
    from sklearn.model_selection import train_test_split

    return train_test_split(frame, test_size=0.3, random_state=0)


def retrain(batch: str) -> None:
    import mlflow
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    recent_train, recent_test = _split(pd.read_csv(batch))
    data = pd.concat(
        [training_data()[FEATURES + [TARGET]], recent_train[FEATURES + [TARGET]]], ignore_index=True
    )
    model = RandomForestRegressor(n_estimators=30, max_depth=8, random_state=0, n_jobs=1)
    model.fit(data[FEATURES], data[TARGET])
    predicted = model.predict(recent_test[FEATURES])
    heavy = recent_test["concurrent_users"] >= recent_test["concurrent_users"].median()
    rmse = root_mean_squared_error(recent_test[TARGET], predicted)
    digest = hashlib.md5(data.to_csv(index=False).encode()).hexdigest()  # noqa: S324 (a content id)
    mlflow.set_experiment(EXPERIMENT_NAME)
    # A run's user is what the client says; say who the server logged in.
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    with mlflow.start_run(run_name="scheduled-retrain", tags={"mlflow.user": user}) as run:
        mlflow.set_tag("git_commit", os.environ.get("GITHUB_SHA") or "0" * 40)
        training_set = mlflow.data.from_pandas(
            data, name="devops_metrics+batch", digest=digest, targets=TARGET
        )
        mlflow.log_input(training_set, context="training")
        mlflow.log_metrics(
            {
                "rmse": rmse,
                "mae": mean_absolute_error(recent_test[TARGET], predicted),
                "r2": r2_score(recent_test[TARGET], predicted),
                "rmse_low_load": root_mean_squared_error(
                    recent_test[TARGET][~heavy], predicted[~heavy.to_numpy()]
                ),
                "rmse_high_load": root_mean_squared_error(
                    recent_test[TARGET][heavy], predicted[heavy.to_numpy()]
                ),
            }
        )
    output(run_id=run.info.run_id)


def card(client, name: str, version: str) -> str:
    """The version's model card, from what the registry knows (the kit's reading of it)."""
    from autograder.kit import lab09_registry as registry

    record = registry.version_records(client, name)[str(version)]
    fields = {
        "Data version": record.get("digest"),
        "Git commit": record.get("commit"),
        "Trained by": record.get("user"),
        "Approved by": record["tags"].get("approved_by", ""),
    }
    return registry.card_markdown(
        name,
        str(version),
        fields,
        record.get("metrics") or {},
        "Response time (ms) of the API from load figures, for capacity planning.",
        "Retrained automatically on the latest batch; check the drift report.",
    )


def promote_run(run_id: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(run_id)
    mv = client.create_model_version(
        MODEL_NAME,
        source=f"{run.info.artifact_uri}/model",
        run_id=run_id,
        tags={"approved_by": os.environ.get("MLFLOW_TRACKING_USERNAME", "")},
    )
    client.set_model_version_tag(MODEL_NAME, mv.version, "model_card", card(client, MODEL_NAME, mv.version))
    previous = move_champion(MODEL_NAME, mv.version, "promote", "scheduled retraining after drift")
    output(version=mv.version, previous=previous)


class OpsError(Exception):
    """The server refused a call (its status and answer), or could not be reached."""


def rest(method: str, path: str, **body: object) -> dict:
    """One call of MLflow's REST API as the user of ``$MLFLOW_TRACKING_USERNAME`` (basic auth).
    The release gate and the rollback use it instead of importing MLflow (seconds per step)."""
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    url = os.environ["MLFLOW_TRACKING_URI"].rstrip("/") + "/api/2.0/mlflow/" + path
    data = None
    if method == "GET":
        url += "?" + urllib.parse.urlencode(body)
    else:
        data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (the lab's own server)
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise OpsError(
            f"{method} {path}: HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}"
        ) from None


def champion(model: str = MODEL_NAME) -> dict:
    return rest("GET", "registered-models/alias", name=model, alias="champion")["model_version"]


def verify(version: str, max_rmse: float) -> None:
    current = champion()
    metrics = rest("GET", "runs/get", run_id=current["run_id"])["run"]["data"].get("metrics", [])
    rmse = next((m["value"] for m in metrics if m["key"] == "rmse"), float("inf"))
    print(
        f"@champion is version {current['version']} (rmse {rmse:.2f}); the release gate asks rmse <= {max_rmse}"
    )
    if current["version"] != str(version) or rmse > max_rmse:
        sys.exit(f"the release gate failed: version {current['version']}, rmse {rmse:.2f} > {max_rmse}")


def move_champion(
    model: str, to: str, action: str, reason: str, audit_experiment: str = AUDIT_EXPERIMENT
) -> str:
    """Point ``@champion`` of ``model`` at version ``to`` as the user of ``$MLFLOW_TRACKING_USERNAME``
    and log the move in the audit log (``action``: promote or rollback); the server decides
    whether that user may. Returns the version ``@champion`` left ("" if it pointed nowhere)."""
    import time

    try:
        left = str(champion(model)["version"])
    except OpsError:
        left = ""
    rest("POST", "registered-models/alias", name=model, alias="champion", version=str(to))
    audit = rest("GET", "experiments/get-by-name", experiment_name=audit_experiment)["experiment"]
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    event = {
        "model": model,
        "action": action,
        "version": str(to),
        "previous": left,
        "actor": user,
        "reason": reason,
    }
    tags = [{"key": f"audit.{k}", "value": v} for k, v in event.items()] + [
        {"key": "mlflow.user", "value": user}
    ]
    now = int(time.time() * 1000)
    made = rest(
        "POST",
        "runs/create",
        experiment_id=audit["experiment_id"],
        run_name=f"{action}-v{to}",
        start_time=now,
        tags=tags,
    )["run"]
    rest("POST", "runs/update", run_id=made["info"]["run_id"], status="FINISHED", end_time=now)
    return left


def rollback(to: str, reason: str) -> None:
    left = move_champion(MODEL_NAME, to, "rollback", reason)
    print(f"@champion back on version {to} (was {left})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ops.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("drift").add_argument("--batch", required=True)
    sub.add_parser("retrain").add_argument("--batch", required=True)
    sub.add_parser("promote").add_argument("--run", required=True)
    check = sub.add_parser("verify")
    check.add_argument("--version", required=True)
    check.add_argument("--max-rmse", type=float, required=True)
    back = sub.add_parser("rollback")
    back.add_argument("--to", required=True)
    back.add_argument("--reason", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import warnings

    warnings.filterwarnings("ignore")  # the stack's own notices (schema hints), not this step's news
    try:
        if args.command == "drift":
            drift(args.batch)
        elif args.command == "retrain":
            retrain(args.batch)
        elif args.command == "promote":
            promote_run(args.run)
        elif args.command == "verify":
            verify(args.version, args.max_rmse)
        else:
            rollback(args.to, args.reason)
    except OpsError as exc:
        sys.exit(str(exc))
    print(json.dumps({"done": args.command}))


if __name__ == "__main__":
    main()
