"""The lab's prediction service (given): FastAPI wiring around the parts you write.

Run it in this folder with
    python -m uvicorn --factory service:from_env --host 127.0.0.1 --port 8000
Settings come from environment variables (see from_env). Each part is a module of this
folder (svc_model.py, svc_validate.py, ...); a part that is not written yet (it raises
NotImplementedError, or its file is missing) is skipped, so the service runs from Task 1 on.
"""

import importlib
import os
import random
import threading
import time
from contextlib import asynccontextmanager

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

PARTS = ("svc_model", "svc_validate", "svc_metrics", "svc_audit", "svc_canary", "svc_drift")


def load_part(name):
    """A part module, or None if its file is missing or does not import (the reason is printed)."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # one broken part must not take the others down
        if not (isinstance(exc, ModuleNotFoundError) and exc.name == name):  # (a missing file: not written yet)
            print(f"part {name} skipped: {type(exc).__name__}: {exc}", flush=True)
        return None


def call_part(part, function, *args, default=None):
    """part.function(*args); `default` when the part is missing or not written yet."""
    if part is None or not hasattr(part, function):
        return default
    try:
        return getattr(part, function)(*args)
    except NotImplementedError:
        return default


def signature_fields(model):
    """{column: type name} from the model's input signature, e.g. {"cpu_usage": "double"}."""
    return {col.name: col.type.name for col in model.metadata.get_input_schema().inputs}


def create_app(model_name, canary_share, audit_log, drift_window, reference_data, seed=None):
    parts = {name: load_part(name) for name in PARTS}
    if parts["svc_model"] is None:
        raise RuntimeError("svc_model.py is missing or does not import: write Task 1 first")
    registry = CollectorRegistry()  # this service's metrics only
    state = {}
    audit_lock, drift_lock = threading.Lock(), threading.Lock()
    rng = random.Random(seed)

    def load():
        """Resolve the aliases and load their models (Task 1); swap them in with one assignment,
        so that a request sees either the old pair or the new one, never half of each."""
        models = parts["svc_model"].load_models(model_name)
        state["live"] = (models, signature_fields(models["champion"]["model"]))
        return {alias: loaded["version"] for alias, loaded in models.items()}

    @asynccontextmanager
    async def lifespan(app):
        load()
        state["metrics"] = call_part(parts["svc_metrics"], "create_metrics", registry)
        reference = pd.read_csv(reference_data)
        state["drift"] = call_part(parts["svc_drift"], "DriftMonitor", reference, drift_window, registry)
        yield

    app = FastAPI(title="lab08 prediction service", lifespan=lifespan)

    def answer(payload):
        """(status, body, prediction) for one request body."""
        models, fields = state["live"]
        validator = parts["svc_validate"]
        features = None
        try:
            features = call_part(validator, "validate", payload, fields)
        except Exception as exc:
            if validator is not None and isinstance(exc, getattr(validator, "InvalidRequest", ())):
                return 422, {"detail": {"field": getattr(exc, "field", None), "message": str(exc)}}, None
            return 500, {"detail": f"validation failed: {type(exc).__name__}"}, None
        try:
            if features is None:  # Task 2 not written: no checks at all
                features = {name: payload[name] for name in fields}
            alias = call_part(parts["svc_canary"], "choose_alias", canary_share, rng, default="champion")
            loaded = models.get(alias) or models["champion"]
            prediction = float(parts["svc_model"].predict(loaded, features))
        except Exception as exc:
            return 500, {"detail": f"prediction failed: {type(exc).__name__}"}, None
        with audit_lock:
            call_part(parts["svc_audit"], "append_audit", audit_log, loaded["version"], features, prediction)
        if state["drift"] is not None:
            with drift_lock:
                call_part(state["drift"], "add", features)
        return 200, {"prediction": prediction, "version": loaded["version"], "alias": alias}, prediction

    @app.post("/predict")
    async def predict(request: Request):
        started = time.perf_counter()
        try:
            payload = await request.json()
        except ValueError:
            status, body, prediction = 422, {"detail": {"field": "body", "message": "not JSON"}}, None
        else:
            status, body, prediction = await run_in_threadpool(answer, payload)
        seconds = time.perf_counter() - started
        if state["metrics"] is not None:
            call_part(parts["svc_metrics"], "observe", state["metrics"], status, seconds, prediction)
        return JSONResponse(body, status_code=status)

    @app.get("/health")
    def health():
        models, _ = state["live"]
        return {"status": "ok", "model": model_name, "versions": {a: m["version"] for a, m in models.items()},
                "canary_share": canary_share}

    @app.post("/reload")
    def reload():
        """Resolve the aliases again: a rollback is one alias move plus this call."""
        return {"versions": load()}

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def from_env():
    env = os.environ
    return create_app(
        model_name=env["MODEL_NAME"],
        canary_share=float(env.get("CANARY_SHARE", "0")),
        audit_log=env.get("AUDIT_LOG", "audit.jsonl"),
        drift_window=int(env.get("DRIFT_WINDOW", "50")),
        reference_data=env.get("REFERENCE_DATA", "reference.csv"),
    )
