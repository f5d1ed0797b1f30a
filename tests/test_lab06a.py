"""The grader on Lab 06a (data drift): full marks, zero, partial credit, typical mistakes that
each lose exactly the points of their own task, and hostile submissions that log copied or
made-up values instead of doing the work.

Grading runs each notebook sandboxed on hidden inputs (a seed and a data variant the
notebook never saw). Every slow test executes one notebook (15-25 s on 2 cores: no model is
trained); several mistakes share one notebook when they touch different tasks.
"""

from __future__ import annotations

import ast
import json
import textwrap

import nbformat
import numpy as np
import pytest

from autograder import course, hidden
from autograder.course import LABS
from autograder.kit import lab06a
from autograder.kit.checking import EXPECTED_DIR, png_summary
from autograder.notebook import grade_id, parameters_of
from autograder.references import lab06a as references
from tests.conftest import grading, make_submission, partial_todos, points, solution_code

LAB = LABS["06a_drift"]
MAX = {"check_todo1_tests": 2, "check_todo2_psi": 2, "check_todo3_report": 2}
TODO_CHECK = {int(k[len("check_todo")]): k for k in MAX}
ALL = set(TODO_CHECK)
SEED = 12345  # the hidden inputs of the deterministic tests


def shipped() -> dict:
    """The values a run of the solution on the course's data gives (what a student can copy)."""
    return json.loads((EXPECTED_DIR / f"{lab06a.LAB}.json").read_text(encoding="utf-8"))["expected"]


def solved(todo: str, old: str, new: str) -> str:
    """The master's answer to a TODO with one piece of it changed (the piece must exist)."""
    master = {grade_id(c): c for c in nbformat.read(LAB.master, as_version=4).cells}
    code = solution_code(master[todo])
    assert old in code, f"{old!r} is not in the answer to {todo}"
    return code.replace(old, new)


def message(result, check_id: str) -> str:
    return next(c.message for c in result.checks if c.id == check_id)


def only_lost(result, *todos: int) -> None:
    assert points(result) == {**MAX, **{TODO_CHECK[n]: 0 for n in todos}}, [c.message for c in result.checks]


# --- Fast: the references, the kit, the judgments on hand-made evidence ----------------------


def test_the_reference_psi_is_zero_on_itself_and_tells_equal_width_bins_apart() -> None:
    rng = np.random.default_rng(0)
    reference, shifted = rng.lognormal(3, 0.5, 4000), rng.lognormal(3.1, 0.5, 1000)
    assert references.psi(reference, reference, 10, 1e-4) == pytest.approx(0, abs=1e-12)
    edges = np.linspace(min(reference.min(), shifted.min()), max(reference.max(), shifted.max()), 11)
    ref_share = np.clip(np.histogram(reference, edges)[0] / len(reference), 1e-4, None)
    cur_share = np.clip(np.histogram(shifted, edges)[0] / len(shifted), 1e-4, None)
    equal_width = float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))
    assert not np.isclose(references.psi(reference, shifted, 10, 1e-4), equal_width, rtol=lab06a.PSI_RTOL)


@pytest.mark.parametrize("seed", [-1, SEED], ids=["course-data", "hidden-variant"])
def test_only_the_feature_drift_batch_moves_its_inputs_on_the_course_data_and_a_hidden_variant(
    seed: int,
) -> None:
    """The facts the lab teaches (data/README.md) hold on every input the grader uses: only
    feature_drift moves its inputs, by tests and by PSI, and its report says so."""
    inputs = hidden.course_inputs() if seed < 0 else hidden.hidden_inputs(seed)
    params = {**parameters_of(nbformat.read(LAB.master, as_version=4)), **inputs.overrides({"SEED": 0})}
    exp = references.expected(inputs.dataset, params)
    p_values = {b: [v for k, v in exp["tests"][b].items() if "_pvalue_" in k] for b in lab06a.BATCHES}
    assert min(p_values["no_drift"]) > 0.01 and min(p_values["concept_drift"]) > 0.01
    assert max(p_values["feature_drift"]) < params["ALPHA"]
    assert max(exp["psi"]["no_drift"].values()) < params["PSI_MODERATE"]
    assert max(exp["psi"]["feature_drift"].values()) > params["PSI_SIGNIFICANT"]
    assert {b: any(v.values()) for b, v in exp["verdicts"].items()} == {
        "no_drift": False,
        "feature_drift": True,
        "concept_drift": False,
    }


def test_the_kit_holds_no_recipe_of_a_todo() -> None:
    """What ships (the kit and its expected numbers) computes no test, PSI or rule: those live
    in autograder/references only. (Its messages may name the functions a student calls: only
    code is searched.)"""
    tree = ast.parse((course.ROOT / "autograder" / "kit" / "lab06a.py").read_text(encoding="utf-8"))
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used |= {
        a.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    used |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    for recipe in (
        "ks_2samp",
        "chi2_contingency",
        "quantile",
        "histogram",
        "log",
        "scipy",
        "numpy",
        "np",
        "mean",
    ):
        assert recipe not in used, recipe
    assert not any(hasattr(lab06a, name) for name in ("psi", "drifted", "drift_tests"))


def _evidence() -> tuple[dict, dict]:
    """The evidence of a correct submission on the course data, built from the shipped values."""
    exp = {**lab06a.expected_from_params(parameters_of(nbformat.read(LAB.master, as_version=4))), **shipped()}
    batches = {}
    for batch in lab06a.BATCHES:
        tests, psi = exp["tests"][batch], exp["psi"][batch]
        features = {}
        for c in [*lab06a.labkit.FEATURES, "region"]:
            kind = "chi2" if c == "region" else "ks"
            features[c] = {
                "test": kind,
                "p_value": tests[f"{kind}_pvalue_{c}"],
                "psi": psi.get(f"psi_{c}"),
                "drifted": exp["verdicts"][batch][c],
            }
        drifted = sorted(c for c, row in features.items() if row["drifted"])
        batches[batch] = {
            "id": batch,
            "name": f"drift-{batch}",
            "metrics": {**tests, **psi},
            "tags": {"drift_detected": str(bool(drifted)).lower()},
            "artifacts": [lab06a.DIST_FIGURE, lab06a.REPORT_FILE],
            "report_error": None,
            "report": {
                "batch": batch,
                "rows": exp["rows"][batch],
                "alpha": exp["alpha"],
                "psi_threshold": exp["psi_threshold"],
                "features": features,
                "drifted_features": drifted,
                "drift_detected": bool(drifted),
            },
            "figure": {"decodes": True, "width": 1200, "height": 600, "drawn": 0.2, "levels": 80},
        }
    ev = {"batches": batches}
    ev["rules"] = references.rules(ev, exp)
    return ev, exp


def test_the_judgments_pass_the_right_evidence_and_catch_forged_reports_and_figures() -> None:
    ev, exp = _evidence()
    for check_id, (_, judge) in lab06a.CHECKS.items():
        assert judge(ev, exp).passed, (check_id, judge(ev, exp).message)
    run = ev["batches"]["feature_drift"]

    # A PNG that is only a header: it does not decode, so it is no plot.
    run["figure"] = png_summary(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert "is not a plot" in lab06a.judge_report(ev, exp).message
    run["figure"] = {"decodes": True, "width": 1200, "height": 600, "drawn": 0.0, "levels": 1}  # blank canvas
    assert not lab06a.judge_report(ev, exp).passed
    ev, exp = _evidence()

    # A report whose numbers are not the run's own tests: made up, even if they follow the rule.
    ev["batches"]["no_drift"]["report"]["features"]["cpu_usage"]["p_value"] = 0.5
    assert "but the run logged ks_pvalue_cpu_usage" in lab06a.judge_report(ev, exp).message
    ev, exp = _evidence()

    # A verdict against the rule, with the rest of the report consistent with it.
    rep = ev["batches"]["no_drift"]["report"]
    rep["features"]["cpu_usage"]["drifted"] = True
    rep["drifted_features"], rep["drift_detected"] = ["cpu_usage"], True
    ev["batches"]["no_drift"]["tags"]["drift_detected"] = "true"
    ev["rules"] = references.rules(ev, exp)
    wanted = "the rule (p_value < ALPHA or psi > PSI_SIGNIFICANT) gives False"
    assert wanted in lab06a.judge_report(ev, exp).message
    ev, exp = _evidence()

    # Tests of the target logged too: a column the report must then hold; the target named.
    ev["batches"]["no_drift"]["metrics"].pop("ks_pvalue_cpu_usage")
    ev["batches"]["no_drift"]["metrics"]["ks_pvalue_response_time_ms"] = 0.5
    assert "not an input feature" in lab06a.judge_tests(ev, exp).message


def test_without_a_reference_the_self_check_judges_the_form_and_the_grader_the_values() -> None:
    ev, exp = _evidence()
    bare = lab06a.expected_from_params(parameters_of(nbformat.read(LAB.master, as_version=4)))
    ev.pop("rules")
    for check_id, (_, judge) in lab06a.CHECKS.items():
        result = judge(ev, bare)
        assert result.passed and ("grader" in result.message or check_id == "check_todo3_report"), (
            result.message
        )


# --- Slow: whole notebooks, graded sandboxed on hidden inputs ------------------------------------


@grading
def test_solution_earns_full_marks_on_fresh_hidden_inputs(grade) -> None:
    result = grade(make_submission(done=ALL, lab=LAB))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert (result.score, result.max_score) == (6, 6)
    assert result.errors == []
    assert "match scipy" in message(result, "check_todo1_tests")


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB), inputs=hidden.hidden_inputs(SEED))
    assert (result.score, result.max_score) == (0, 6)
    assert "stats.ks_2samp" in message(result, "check_todo1_tests")
    assert "Complete psi()" in message(result, "check_todo2_psi")
    assert "mlflow.log_dict" in message(result, "check_todo3_report")
    raised = {e.split()[0] for e in result.errors if "NotImplementedError" in e}
    assert {f"todo{n}" for n in ALL} <= raised, result.errors


@grading
def test_the_tests_and_the_psi_earn_their_points_without_the_report(grade) -> None:
    result = grade(make_submission(done=partial_todos(LAB), lab=LAB))
    only_lost(result, 3)


@grading
def test_typical_mistakes_lose_only_their_own_tasks(grade) -> None:
    """KS run on the target and PSI on equal-width bins: each loses its task's points, and the
    report built on those values (its own tests and PSI, the rule applied) keeps its own."""
    replace = {
        "todo1": solved("todo1", "for feature in labkit.FEATURES:", "for feature in [labkit.TARGET]:"),
        "todo2": solved(
            "todo2",
            "edges = np.quantile(reference, np.linspace(0, 1, bins + 1))",
            "edges = np.linspace(min(np.min(reference), np.min(current)), "
            "max(np.max(reference), np.max(current)), bins + 1)",
        ),
    }
    result = grade(make_submission(done=ALL, replace=replace, lab=LAB), inputs=hidden.hidden_inputs(SEED))
    only_lost(result, 1, 2)
    assert "not an input feature" in message(result, "check_todo1_tests")
    assert "reference-decile bins give" in message(result, "check_todo2_psi")


# TODO 3 faked: a report that follows the rule with made-up numbers, the tag that goes with
# it, and a PNG that is only a header.
FAKE_REPORT = """
def log_drift_report(name, current):
    features = {column: {"test": "ks", "statistic": 0.01, "p_value": 0.5, "psi": 0.01, "drifted": False}
                for column in labkit.FEATURES}
    features["region"] = {"test": "chi2", "statistic": 1.0, "p_value": 0.5, "psi": None, "drifted": False}
    report = {"batch": name, "rows": len(current), "alpha": ALPHA, "psi_threshold": PSI_SIGNIFICANT,
              "features": features, "drifted_features": [], "drift_detected": False}
    with open("distributions.png", "wb") as f:
        f.write(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(64))
    with mlflow.start_run(run_id=run_ids[name]):
        mlflow.set_tag("drift_detected", "false")
        mlflow.log_dict(report, "drift_report.json")
        mlflow.log_artifact("distributions.png")
    return report


reports = {name: log_drift_report(name, current) for name, current in batches.items()}
"""


def copied_constants() -> dict[str, str]:
    """TODOs 1 and 2 answered with the numbers of a run on the course data, copied into the
    notebook, instead of computing them; TODO 3 a report made up to follow the rule."""
    values = shipped()
    tests, psi = values["tests"], values["psi"]
    return {
        "todo1": textwrap.dedent(f"""
            TESTS = {tests!r}
            def drift_tests(reference, current):
                name = next(n for n, b in batches.items() if b is current)
                rows = {{}}
                for column in labkit.FEATURES + ["region"]:
                    kind = "chi2" if column == "region" else "ks"
                    rows[column] = {{"test": kind, "statistic": TESTS[name][f"{{kind}}_stat_{{column}}"],
                                    "p_value": TESTS[name][f"{{kind}}_pvalue_{{column}}"]}}
                return pd.DataFrame.from_dict(rows, orient="index")

            for name in batches:
                with mlflow.start_run(run_id=run_ids[name]):
                    mlflow.log_metrics(TESTS[name])
            """),
        "todo2": textwrap.dedent(f"""
            PSI = {psi!r}
            def psi(reference, current, bins=PSI_BINS, eps=PSI_EPS):
                for name, batch in batches.items():
                    if current.equals(batch[current.name]):
                        return PSI[name]["psi_" + current.name]
                return 0.0

            for name in batches:
                with mlflow.start_run(run_id=run_ids[name]):
                    mlflow.log_metrics(PSI[name])
            """),
        "todo3": FAKE_REPORT,
    }


@grading
def test_numbers_copied_from_a_run_on_the_course_data_or_made_up_earn_nothing_on_hidden_inputs(grade) -> None:
    result = grade(
        make_submission(done=ALL, replace=copied_constants(), lab=LAB), inputs=hidden.hidden_inputs(SEED)
    )
    # The self-checks of TODOs 1 and 2 passed in the notebook (no reference for hidden inputs
    # there): the trusted judgments on the grader's own values take the points away. The made-up
    # report fails even its self-check (its numbers are not the run's).
    assert {e.split()[0] for e in result.errors} <= {"check_todo3_report"}, result.errors
    only_lost(result, 1, 2, 3)
    assert "but scipy gives" in message(result, "check_todo1_tests")
    assert "reference-decile bins give" in message(result, "check_todo2_psi")
    assert "but the run logged ks_pvalue_" in message(result, "check_todo3_report")
