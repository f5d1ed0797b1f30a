"""Lab 09's references shared by its two parts (``lab09a``, ``lab09b``): the grader's own run of
the kit's probe in the submission's sandbox (``autograder.kit.lab09_probe``), asked for what the
part needs: the server's answers (09a) or the workflow's calls (09b)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from autograder.kit import lab09_registry as registry
from autograder.kit.i18n import _
from autograder.labspec import SandboxRunner, nonce_answer


def base_expected(params: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    """What the parameters alone decide, and the parameters themselves (the probe's job)."""
    return {**registry.expected_from_params(params), "params": {k: params[k] for k in names if k in params}}


def run_probe(ev: dict[str, Any], exp: dict[str, Any], runner: SandboxRunner, parts: tuple[str, ...]) -> None:
    """Run the probe in the submission's sandbox for ``parts`` (``access``, ``promote``, ``flow``)
    and put its answers, or the reason there are none, in the evidence."""
    params = exp["params"]
    users = {
        "data_scientist": params["DS_USER"],
        "reviewer": params["REVIEWER_USER"],
        "viewer": params["VIEWER_USER"],
    }
    exp["users"] = users
    nonce = secrets.token_hex(16)
    job = {
        "tracking_uri": runner.tracking_uri,
        "params": params,
        "users": users,
        "nonce": nonce,
        "parts": parts,
    }
    done = runner.run_kit("autograder.kit.lab09_probe", [], json.dumps(job).encode())
    answer = nonce_answer(done.returncode, done.stdout, done.stderr, nonce, _("asking the server"))
    for part in parts:
        ev[part] = answer.get(part) or {"error": answer.get("error", "no answer")}
