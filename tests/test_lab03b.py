"""The grader on Lab 03b (choosing a model): full marks, zero, partial credit, typical mistakes
that each lose exactly the points of their own task (a winner chosen on the test split loses
Task 3 only; latencies in seconds lose Task 1 only), and hostile submissions (a PNG that is only
a header, decision tags set without the rule, test scores copied from a run on the course data
or logged on every run).

The notebook tests execute four notebooks in all (30-120 s each on 2 shared cores); each one
serves several assertions. The judgments are also tested on hand-made evidence, which is fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from autograder import hidden
from autograder.course import LABS
from autograder.kit import lab03b
from autograder.kit.checking import EXPECTED_DIR
from autograder.notebook import grade_id
from autograder.references import lab03b as references
from tests.conftest import grading, make_submission, partial_todos, points, solution_code

LAB = LABS["03b_selection"]
MAX = {"check_todo1_latency": 1, "check_todo2_figure": 1, "check_todo3_decision": 2, "check_todo4_final": 1}
#: What the given set-up logs into each model's run (Lab 03a's TODO 1 logs more).
SETUP_METRICS = ("cv_r2_mean", "cv_r2_std")
#: One hidden seed for every notebook test here: its data variant is made once and cached.
SEED = 12345


def solved(todo: str, old: str, new: str) -> str:
    """The master's answer to a TODO with one piece of it changed (the piece must exist)."""
    master = {grade_id(c): c for c in nbformat.read(LAB.master, as_version=4).cells}
    code = solution_code(master[todo])
    assert old in code, f"{old!r} is not in the answer to {todo}"
    return code.replace(old, new)


def messages(result) -> dict[str, str]:  # noqa: ANN001
    return {c.id: c.message for c in result.checks}


# --- The rule and the judgments, on hand-made evidence (fast) ------------------------------


def test_the_kit_holds_no_reference_computation() -> None:
    import inspect

    source = inspect.getsource(lab03b)
    for recipe in ("apply_rule", "idxmax", "r2_score", "mean_absolute_error", "perf_counter", "fit(",
                   "cross_val_score("):
        assert recipe not in source, recipe


def test_the_rule_in_the_references() -> None:
    metrics = {"a": (0.9, 20.0), "b": (0.8, 1.0), "c": (0.7, 10.0)}
    assert references.apply_rule(metrics, 10.0) == {"a": "over_budget", "b": "winner", "c": "lower_r2"}
    assert references.apply_rule(metrics, 50.0) == {"a": "winner", "b": "lower_r2", "c": "lower_r2"}
    assert set(references.apply_rule(metrics, 0.5).values()) == {"over_budget"}


def _evidence(decisions: dict[str, str], winner_tag: str | None, latency: float = 5.0) -> dict:
    runs = {
        name: {"id": f"id-{name}", "name": name, "tags": {"decision": decisions[name]},
               "metrics": {"cv_r2_mean": r2, "cv_r2_std": 0.05, "cv_rmse_mean": 1.0, "cv_mae_mean": 1.0,
                           lab03b.LATENCY: latency}}
        for name, r2 in zip(lab03b.MODEL_TYPES, (0.6, 0.9, 0.8, 0.7), strict=True)
    }
    return {"experiment": {"id": "1", "tags": {} if winner_tag is None else {"winner_run_id": winner_tag}},
            "parent": {"id": "p"}, "candidates": runs}


EXP = {"experiment_name": "lab03b-selection", "parent_run_name": "model-comparison", "budget_ms": 10.0}
RIGHT = {"linear": "lower_r2", "random_forest": "winner", "gradient_boosting": "lower_r2",
         "hist_gradient_boosting": "lower_r2"}


def test_the_decision_judgment_without_and_with_the_rule() -> None:
    ev = _evidence(RIGHT, "id-random_forest")
    rule = references.rule_decisions(ev, 10.0)
    assert rule == RIGHT
    assert lab03b.judge_decision(ev, EXP).passed  # the self-check: structure only
    assert "grader checks" in lab03b.judge_decision(ev, EXP).message
    assert lab03b.judge_decision(ev, {**EXP, "decisions": rule}).passed
    # Tags set without the work: every run a winner, or a winner tag that names no run.
    every = lab03b.judge_decision(_evidence(dict.fromkeys(RIGHT, "winner"), "id-linear"), EXP)
    assert not every.passed and "at most one" in every.message
    pasted = lab03b.judge_decision(_evidence(RIGHT, "0123456789abcdef0123456789abcdef"), EXP)
    assert not pasted.passed and "winner_run_id" in pasted.message
    # Right structure, wrong rule: all four over the budget, so there is no winner.
    slow = _evidence(RIGHT, "id-random_forest", latency=50.0)
    wrong = lab03b.judge_decision(slow, {**EXP, "decisions": references.rule_decisions(slow, 10.0)})
    assert not wrong.passed and "over_budget" in wrong.message


def test_a_winner_chosen_ignoring_the_budget_loses_task_3() -> None:
    """The best R² (the random forest) is over the latency budget, as on a slow machine: the
    rule makes it over_budget and the next best within the budget the winner. Tagging the best
    R² the winner, whatever its latency, is the typical mistake."""
    ev = _evidence(RIGHT, "id-random_forest")
    ev["candidates"]["random_forest"]["metrics"][lab03b.LATENCY] = 25.0
    rule = references.rule_decisions(ev, 10.0)
    assert rule == {**RIGHT, "random_forest": "over_budget", "gradient_boosting": "winner"}
    result = lab03b.judge_decision(ev, {**EXP, "decisions": rule})
    assert not result.passed and "over_budget" in result.message and "random_forest" in result.message, result.message


#: Cross-validation and the test split disagree, as they can: on this (made-up) test split the
#: histogram boosting beats the gradient boosting; by cross-validation it does not. The random
#: forest, best on both, is over the latency budget.
CV_R2 = {"linear": 0.60, "random_forest": 0.90, "gradient_boosting": 0.80, "hist_gradient_boosting": 0.70}
TEST_R2 = {"linear": 0.62, "random_forest": 0.91, "gradient_boosting": 0.79, "hist_gradient_boosting": 0.83}
LATENCY_MS = {"linear": 0.4, "random_forest": 25.0, "gradient_boosting": 0.5, "hist_gradient_boosting": 0.9}


def _reference_values() -> dict:
    """What the grader's references would compute: each model's cross-validated and test scores."""
    cv = {name: {"cv_r2_mean": r2, "cv_r2_std": 0.04, "cv_r2_std_sample": 0.049, "cv_rmse_mean": 40 - 20 * r2,
                 "cv_mae_mean": 20 - 10 * r2} for name, r2 in CV_R2.items()}
    test = {name: {"test_r2": r2, "test_rmse": 41 - 20 * r2, "test_mae": 21 - 10 * r2} for name, r2 in TEST_R2.items()}
    return {**EXP, "cv_folds": 3, "metrics": cv, "test_metrics": test}


def _submission(decisions: dict[str, str], tested: set[str], ref: dict) -> dict:
    """The evidence of a submission whose set-up logged the cross-validated R², with the
    latencies, the given decisions, and test metrics on the runs in ``tested``."""
    ev = _evidence(decisions, None)
    for name, run in ev["candidates"].items():
        run["metrics"] = {**{m: ref["metrics"][name][m] for m in SETUP_METRICS}, lab03b.LATENCY: LATENCY_MS[name]}
        if name in tested:
            run["metrics"].update(ref["test_metrics"][name])
    winner = next((name for name, d in decisions.items() if d == "winner"), None)
    ev["experiment"]["tags"]["winner_run_id"] = f"id-{winner}" if winner else "none"
    return ev


def _grade_on_evidence(ev: dict, ref: dict) -> dict[str, bool]:
    """Task -> passed, as the grader judges (the rule applied by the references, as run_code
    does)."""
    exp = dict(ref)
    references.run_code(ev, exp, Path("unused"), runner=None)
    judged = {cid: judge(ev, exp) for cid, (_, judge) in lab03b.CHECKS.items() if cid != "check_todo2_figure"}
    return {cid: r.passed for cid, r in judged.items()} | {"messages": {cid: r.message for cid, r in judged.items()}}


def test_a_winner_chosen_on_the_test_split_loses_task_3_only() -> None:
    ref = _reference_values()
    on_cv = references.apply_rule({n: (CV_R2[n], LATENCY_MS[n]) for n in CV_R2}, 10.0)
    on_test = references.apply_rule({n: (TEST_R2[n], LATENCY_MS[n]) for n in TEST_R2}, 10.0)
    assert on_cv["gradient_boosting"] == "winner" and on_test["hist_gradient_boosting"] == "winner"
    honest = _grade_on_evidence(_submission(on_cv, {"gradient_boosting"}, ref), ref)
    assert all(v for k, v in honest.items() if k != "messages"), honest["messages"]
    # Chosen on the test split, then (rightly) only that winner scored on it: Task 3 alone fails.
    chosen_on_test = _grade_on_evidence(_submission(on_test, {"hist_gradient_boosting"}, ref), ref)
    failed = [k for k, v in chosen_on_test.items() if k != "messages" and not v]
    assert failed == ["check_todo3_decision"], chosen_on_test["messages"]
    text = chosen_on_test["messages"]["check_todo3_decision"]
    assert "rule applied to the R² on the test split" in text and "cv_r2_mean" in text, text


def test_the_test_split_gives_its_word_on_the_winner_only() -> None:
    ref = _reference_values()
    on_cv = references.apply_rule({n: (CV_R2[n], LATENCY_MS[n]) for n in CV_R2}, 10.0)
    exp = {**ref, "decisions": on_cv}

    def final(tested: set[str], decisions: dict[str, str] = on_cv, **changes: float) -> lab03b.CheckResult:
        ev = _submission(decisions, tested, ref)
        ev["candidates"]["gradient_boosting"]["metrics"].update(changes)
        return lab03b.judge_final(ev, exp)

    assert final({"gradient_boosting"}).passed
    # Every model scored on the test split (the temptation to choose on it), or none.
    every = final(set(CV_R2))
    assert not every.passed and "only the winner 'gradient_boosting'" in every.message, every.message
    assert "lacks test_rmse, test_mae, test_r2" in final(set()).message
    # Values from elsewhere (a run on the course data, or the cross-validated ones).
    copied = final({"gradient_boosting"}, test_r2=0.8, test_rmse=24.0)
    assert not copied.passed and "on the test split" in copied.message, copied.message
    # No decision recorded: nothing to give the word on.
    undecided = _submission(on_cv, set(), ref)
    undecided["experiment"]["tags"].pop("winner_run_id")
    for run in undecided["candidates"].values():
        run["tags"].pop("decision")
    assert "Finish TODO 3 first" in lab03b.judge_final(undecided, exp).message
    # No model within the budget: there is no winner, and nothing is scored.
    nobody = dict.fromkeys(CV_R2, "over_budget")
    assert final(set(), decisions=nobody).passed
    assert not final({"linear"}, decisions=nobody).passed
    # The self-check (no references): structure only.
    assert "grader checks" in lab03b.judge_final(_submission(on_cv, {"gradient_boosting"}, ref), EXP).message


def test_a_png_header_alone_or_a_blank_canvas_is_not_a_figure() -> None:
    import io

    from PIL import Image

    from autograder.kit.checking import png_summary

    def figure(data: bytes) -> dict:
        ev = {"parent": {"id": "p"}, "artifacts": [lab03b.FIGURE], "figure": png_summary(data)}
        return lab03b.judge_figure(ev, EXP)

    assert "not a PNG" in figure(b"\x89PNG\r\n\x1a\n").message
    blank = io.BytesIO()
    Image.new("RGB", (1100, 400), "white").save(blank, format="PNG")
    assert "not a plot" in figure(blank.getvalue()).message


# --- Notebooks ----------------------------------------------------------------------------


@grading
def test_solution_earns_full_marks_with_the_shipped_values(grade) -> None:
    # On the course's own inputs the self-checks compare with the shipped values, and the
    # grader with its references.
    result = grade(make_submission(done={1, 2, 3, 4}, lab=LAB), inputs=hidden.course_inputs())
    assert points(result) == MAX, [c.message for c in result.checks]
    assert result.errors == []
    assert "alone was scored on the test split" in messages(result)["check_todo4_final"]


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB), inputs=hidden.hidden_inputs(SEED))
    assert (result.score, result.max_score) == (0, 5)
    found = messages(result)
    assert "latency_p50_ms" in found["check_todo1_latency"]
    assert "mlflow.log_figure" in found["check_todo2_figure"]
    assert "finish TODO 1 first" in found["check_todo3_decision"]
    assert "Finish TODO 3 first" in found["check_todo4_final"]
    # TODO 4 finds no winner recorded by an untouched TODO 3, and raises its own stub, not a NameError.
    assert sum("NotImplementedError" in e for e in result.errors) == 4, result.errors


@grading
def test_a_partial_notebook_earns_the_points_of_its_done_tasks(grade) -> None:
    # The nbgrader test grades the same notebook (shared, graded once per session).
    done = partial_todos(LAB)
    result = grade(make_submission(done=done, lab=LAB))
    expected = {k: (v if int(k[len("check_todo")]) in done else 0) for k, v in MAX.items()}
    assert 0 < sum(expected.values()) < sum(MAX.values())
    assert points(result) == expected, [c.message for c in result.checks]


@grading
def test_seconds_a_header_only_png_and_copied_test_scores_lose_only_their_tasks(grade) -> None:
    """Latencies in seconds (Task 1), a PNG that is only a header (Task 2) and the winner's test
    scores copied from a run on the course data (Task 4). The decision (Task 3) is right: it is
    judged on the latencies in the store, where seconds are all within the budget."""
    ref = json.loads((EXPECTED_DIR / f"{LAB.lab_id}.json").read_text(encoding="utf-8"))["expected"]
    header_only = (
        'with open("comparison.png", "wb") as f:\n'
        '    f.write(b"\\x89PNG\\r\\n\\x1a\\n")\n'
        "with mlflow.start_run(run_id=parent_id):\n"
        '    mlflow.log_artifact("comparison.png")\n'
    )
    copied_test = (
        f"COPIED = {json.dumps(ref['test_metrics']['gradient_boosting'])}  # the winner's, on the course data\n"
        "with mlflow.start_run(run_id=winner_run_id):\n"
        "    mlflow.log_metrics(COPIED)\n"
    )
    replace = {
        "todo1": solved("todo1", "(time.perf_counter() - start) * 1000", "time.perf_counter() - start"),
        "todo2": header_only,
        "todo4": copied_test,
    }
    result = grade(make_submission(done={3}, replace=replace, lab=LAB), inputs=hidden.hidden_inputs(SEED))
    assert points(result) == {**dict.fromkeys(MAX, 0), "check_todo3_decision": 2}, [c.message for c in result.checks]
    # No answer cell raised: a check of mere presence would have given full marks.
    assert not [e for e in result.errors if e.startswith("todo")], result.errors
    found = messages(result)
    assert "milliseconds" in found["check_todo1_latency"]
    assert "not a PNG image" in found["check_todo2_figure"]
    assert "gives test_" in found["check_todo4_final"] and "on the test split" in found["check_todo4_final"]
