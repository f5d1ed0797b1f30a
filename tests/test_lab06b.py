"""The grader on Lab 06b (concept drift and retraining): full marks, zero, partial credit,
typical mistakes that each lose exactly the points of their own task, and hostile submissions
that log copied values instead of doing the work.

Grading runs each notebook sandboxed on hidden inputs (a seed and a data variant the
notebook never saw). Every slow test executes one notebook (25-40 s on 2 cores); several
mistakes share one notebook when they touch different tasks.
"""

from __future__ import annotations

import ast
import json
import textwrap

import nbformat
import pytest

from autograder import course, hidden
from autograder.course import LABS
from autograder.kit import lab06b
from autograder.kit.checking import EXPECTED_DIR
from autograder.notebook import grade_id, parameters_of
from autograder.references import lab06b as references
from tests.conftest import grading, make_submission, partial_todos, points, solution_code

LAB = LABS["06b_retraining"]
MAX = {"check_todo1_concept": 2, "check_todo2_decision": 1, "check_todo3_retrain": 2}
TODO_CHECK = {int(k[len("check_todo")]): k for k in MAX}
ALL = set(TODO_CHECK)
SEED = 12345  # the hidden inputs of the deterministic tests


# TODO 3 done without the comparison: the challenger is registered and promoted blindly.
PROMOTED_WITHOUT_COMPARISON = """
mlflow.end_run()
training_data = pd.concat([reference, recent_train])
with mlflow.start_run(run_name=RETRAIN_RUN):
    info = log_and_register(train_model(training_data), training_data)
client.set_registered_model_alias(MODEL_NAME, "challenger", info.registered_model_version)
client.set_registered_model_alias(MODEL_NAME, "champion", info.registered_model_version)
promoted = True
"""


def shipped() -> dict:
    """The values a run of the solution on the course's data gives (what a student can copy)."""
    return json.loads((EXPECTED_DIR / f"{lab06b.LAB}.json").read_text(encoding="utf-8"))["expected"]


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


@pytest.mark.parametrize(
    "seed", [-1, SEED, 7, 2024], ids=["course-data", "hidden-12345", "hidden-7", "hidden-2024"]
)
def test_the_batches_behave_as_the_lab_says_on_the_course_data_and_hidden_variants(seed: int) -> None:
    """The facts the lab teaches (data/README.md) hold on every input the grader uses: the
    inputs of feature_drift alone are far out of range (without drift about 2% are, by
    construction), the detector fires only on concept_drift, near row 400, the rule retrains on
    both, and the challenger beats the champion on recent_eval."""
    inputs = hidden.course_inputs() if seed < 0 else hidden.hidden_inputs(seed)
    params = {**parameters_of(nbformat.read(LAB.master, as_version=4)), **inputs.overrides({"SEED": 0})}
    exp = references.expected(inputs.dataset, params)
    largest = {b: max(v.values()) for b, v in exp["out_of_range"].items()}
    limit = params["RANGE_LIMIT"]
    assert largest["no_drift"] < limit / 2 and largest["concept_drift"] < limit / 2, largest
    assert largest["feature_drift"] > limit * 1.2, largest
    assert exp["alarms"]["no_drift"] is None and exp["alarms"]["feature_drift"] is None
    assert abs(exp["alarms"]["concept_drift"] - 400) <= params["WINDOW"]
    decisions = {b: exp["decision_if"][b][str(exp["alarms"][b] is not None).lower()] for b in lab06b.BATCHES}
    assert decisions == {"no_drift": False, "feature_drift": True, "concept_drift": True}
    assert exp["challenger_mae"] < exp["champion_mae"]


def test_the_reference_out_of_range_share_is_what_the_given_cell_computes() -> None:
    """The grader's shares are the given set-up's, on the same data (the cell is locked)."""
    master = {grade_id(c): c for c in nbformat.read(LAB.master, as_version=4).cells}
    namespace: dict = {"labkit": lab06b.labkit}
    source = master["batch_runs"].source
    exec(source[: source.index("\n\n\nrun_ids")], namespace)  # the function only, no MLflow
    inputs = hidden.hidden_inputs(SEED)
    reference, batches = references._data(str(inputs.dataset))
    for batch, current in batches.items():
        given = namespace["out_of_range"](reference, current).to_dict()
        assert given == pytest.approx(references.out_of_range(reference, current), abs=1e-12), batch


def test_the_kit_holds_no_recipe_of_a_todo() -> None:
    """What ships (the kit and its expected numbers) computes no window error, change point,
    rule or model: those live in autograder/references only. (Its messages may name the
    functions a student calls: only code is searched.)"""
    tree = ast.parse((course.ROOT / "autograder" / "kit" / "lab06b.py").read_text(encoding="utf-8"))
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
        "mean_absolute_error",
        "RandomForestRegressor",
        "sklearn",
        "numpy",
        "np",
        "mean",
        "groupby",
    ):
        assert recipe not in used, recipe
    assert not any(
        hasattr(lab06b, name) for name in ("page_hinkley", "retrain", "window_mae", "should_retrain")
    )


def _evidence() -> tuple[dict, dict]:
    """The evidence of a correct submission on the course data, built from the shipped values."""
    exp = {**lab06b.expected_from_params(parameters_of(nbformat.read(LAB.master, as_version=4))), **shipped()}
    batches = {}
    for batch in lab06b.BATCHES:
        alarm = exp["alarms"][batch]
        concept = str(alarm is not None).lower()
        metrics = {f"out_of_range_{f}": v for f, v in exp["out_of_range"][batch].items()}
        if alarm is not None:
            metrics["change_point_row"] = alarm
        batches[batch] = {
            "id": batch,
            "name": f"drift-{batch}",
            "metrics": metrics,
            "windows": exp["windows"][batch],
            "tags": {
                "concept_drift_detected": concept,
                "retrain": str(exp["decision_if"][batch][concept]).lower(),
            },
        }
    registry = {
        "name": exp["model_name"],
        "exists": True,
        "aliases": {"champion": 2, "challenger": 2},
        "versions": [{"version": 1, "run": exp["initial_run"]}, {"version": 2, "run": exp["retrain_run"]}],
        "retrain_run": {
            "name": exp["retrain_run"],
            "metrics": {"champion_mae": exp["champion_mae"], "challenger_mae": exp["challenger_mae"]},
        },
        "to_predict": [2, 1],
        "predictions": {
            "2": {"predictions": exp["challenger_pred"]},
            "1": {"predictions": exp["champion_pred"]},
        },
    }
    return {"batches": batches, "registry": registry}, exp


def test_the_judgments_pass_the_right_evidence_and_catch_forged_decisions_and_aliases() -> None:
    ev, exp = _evidence()
    for check_id, (_, judge) in lab06b.CHECKS.items():
        assert judge(ev, exp).passed, (check_id, judge(ev, exp).message)

    # 'champion' moved to the set-up's version although the challenger is better: wrong version.
    ev["registry"]["aliases"]["champion"] = 1
    assert "beats the champion" in lab06b.judge_retrain(ev, exp).message
    # 'challenger' on a version that is not the retrained forest (a copy of the champion).
    ev["registry"]["aliases"] = {"champion": 1, "challenger": 2}
    ev["registry"]["predictions"]["2"] = {"predictions": exp["champion_pred"]}
    assert "does not predict like a forest" in lab06b.judge_retrain(ev, exp).message
    ev, exp = _evidence()

    # The comparison's MAEs made up (the challenger "wins" by far): not what the models score.
    ev["registry"]["retrain_run"]["metrics"] = {"champion_mae": 250.0, "challenger_mae": 20.0}
    assert "score champion_mae=" in lab06b.judge_retrain(ev, exp).message
    ev, exp = _evidence()

    # A decision tag set without the rule: 'retrain' on the batch where nothing moved.
    ev["batches"]["no_drift"]["tags"]["retrain"] = "true"
    assert "run 'drift-no_drift' has retrain=true" in lab06b.judge_decision(ev, exp).message
    ev, exp = _evidence()

    # The shares logged in the run forged (every input "far out of range"): the grader's own
    # shares decide, so retraining on no_drift is still against the rule.
    run = ev["batches"]["no_drift"]
    run["metrics"].update({k: 0.9 for k in run["metrics"] if k.startswith("out_of_range_")})
    run["tags"]["retrain"] = "true"
    assert not lab06b.judge_decision(ev, exp).passed
    ev, exp = _evidence()

    # A decision judged on the run's own detector tag: a wrong alarm (TODO 1) followed by the
    # rule's answer to it (retrain) is not counted again here.
    ev["batches"]["no_drift"]["tags"].update({"concept_drift_detected": "true", "retrain": "true"})
    assert lab06b.judge_decision(ev, exp).passed
    assert "fired on 'no_drift'" in lab06b.judge_concept(ev, exp).message


def test_without_a_reference_the_self_check_judges_the_form_and_the_grader_the_values() -> None:
    ev, _ = _evidence()
    bare = lab06b.expected_from_params(parameters_of(nbformat.read(LAB.master, as_version=4)))
    for check_id, (_, judge) in lab06b.CHECKS.items():
        result = judge(ev, bare)
        assert result.passed and "grader" in result.message, (check_id, result.message)


# --- Slow: whole notebooks, graded sandboxed on hidden inputs ------------------------------------


@grading
def test_solution_earns_full_marks_on_fresh_hidden_inputs(grade) -> None:
    result = grade(make_submission(done=ALL, lab=LAB))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert (result.score, result.max_score) == (5, 5)
    assert result.errors == []
    assert "promoted" in message(result, "check_todo3_retrain")


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB), inputs=hidden.hidden_inputs(SEED))
    assert (result.score, result.max_score) == (0, 5)
    assert "page_hinkley()" in message(result, "check_todo1_concept")
    assert "should_retrain()" in message(result, "check_todo2_decision")
    assert "no alias 'challenger'" in message(result, "check_todo3_retrain")
    raised = {e.split()[0] for e in result.errors if "NotImplementedError" in e}
    assert {f"todo{n}" for n in ALL} <= raised, result.errors


@grading
def test_the_decision_and_the_retraining_do_not_need_the_change_detector(grade) -> None:
    result = grade(make_submission(done=partial_todos(LAB), lab=LAB))
    only_lost(result, 1)


@grading
def test_typical_mistakes_lose_only_their_own_tasks(grade) -> None:
    """Page-Hinkley without the running mean fires on every batch, and the challenger is
    promoted without a comparison: each loses its task's points, and the decision built on the
    wrong alarms (the rule applied to them) keeps its point."""
    replace = {
        "todo1": solved("todo1", "cumulative += value - mean - delta", "cumulative += value - delta"),
        "todo3": PROMOTED_WITHOUT_COMPARISON,
    }
    result = grade(make_submission(done=ALL, replace=replace, lab=LAB), inputs=hidden.hidden_inputs(SEED))
    only_lost(result, 1, 3)
    assert "the change detector fired on" in message(result, "check_todo1_concept")
    assert "Compare the models before promoting" in message(result, "check_todo3_retrain")


def copied_constants() -> dict[str, str]:
    """TODOs 1 and 3 answered with the numbers of a run on the course data, copied into the
    notebook, instead of computing them; TODO 2 is done as the master does."""
    values = shipped()
    maes = {"champion_mae": values["champion_mae"], "challenger_mae": values["challenger_mae"]}
    return {
        "todo1": solved(
            "todo1",
            "    errors = (data[labkit.TARGET] - model.predict(data[labkit.FEATURES])).abs()\n"
            "    return errors.groupby(np.arange(len(errors)) // window).mean()\n",
            f"    WINDOWS = {values['windows']!r}\n    return next(WINDOWS[n] for n, b in batches.items() if b is data)\n",
        ),
        "todo3": textwrap.dedent(f"""
            mlflow.end_run()
            training_data = pd.concat([reference, recent_train])
            with mlflow.start_run(run_name=RETRAIN_RUN):
                info = log_and_register(train_model(training_data), training_data)
                client.set_registered_model_alias(MODEL_NAME, "challenger", info.registered_model_version)
                mlflow.log_metrics({maes!r})
            client.set_registered_model_alias(MODEL_NAME, "champion", info.registered_model_version)
            promoted = True
            """),
    }


@grading
def test_numbers_copied_from_a_run_on_the_course_data_earn_nothing_on_hidden_inputs(grade) -> None:
    result = grade(
        make_submission(done=ALL, replace=copied_constants(), lab=LAB), inputs=hidden.hidden_inputs(SEED)
    )
    # The self-checks passed in the notebook (no reference for hidden inputs there): the
    # trusted judgments on the grader's own values take the points away.
    assert result.errors == [], result.errors
    only_lost(result, 1, 3)
    assert "window_mae values" in message(result, "check_todo1_concept")
    assert "score champion_mae=" in message(result, "check_todo3_retrain")
