"""Lab 08b's model part of the service (given): part a's Task 1 is where you write your own.

It reads both aliases from the registered model in one call, loads each alias's version once,
when the service starts, and predicts one row at a time. The grader copies this file over
``svc_model.py`` before it starts part b's service: in part b, only the canary, the drift
monitor, the load test and the Dockerfile are yours.
"""

import mlflow
import pandas as pd


def load_models(model_name):
    """{alias: {"version": "<number>", "model": <the loaded pyfunc model>}} for both aliases (the
    wiring reads the signature from the pyfunc model's metadata)."""
    aliases = mlflow.MlflowClient().get_registered_model(model_name).aliases
    return {alias: {"version": str(aliases[alias]),
                    "model": mlflow.pyfunc.load_model(f"models:/{model_name}/{aliases[alias]}")}
            for alias in ("champion", "challenger")}


def predict(loaded, features):
    """The loaded model's prediction for one row (a dict of features), as a float."""
    row = pd.DataFrame([features])
    return float(loaded["model"].predict(row)[0])
