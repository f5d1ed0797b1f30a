"""The similarity report: a renamed, reformatted copy is found; independent work, the starter
code and the textbook answer are not flagged. Fast: notebooks are read as text, never run."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder import similarity
from tests.conftest import LAB01, make_submission

# One student's own answers to Lab 01's TODOs 2-4 (not the master's way of writing them).
ALICE = {
    "todo2": '''mlflow.end_run()
params = dict(model_type="RandomForestRegressor", n_estimators=N_ESTIMATORS, max_depth=MAX_DEPTH,
              random_state=SEED, test_size=TEST_SIZE)
run = mlflow.start_run(run_name=RUN_NAME)
for key, value in params.items():
    mlflow.log_param(key, value)
''',
    "todo3": '''scores = {}
for name, fn in [("rmse", root_mean_squared_error), ("mae", mean_absolute_error), ("r2", r2_score)]:
    scores[name] = float(fn(y_test, y_pred))
    print(f"{name}: {scores[name]:.3f}")
metrics = scores
for name, value in metrics.items():
    mlflow.log_metric(name, value)
metrics
''',
    "todo4": '''figure = plt.figure(figsize=(6, 6))
axes = figure.add_subplot(1, 1, 1)
axes.scatter(y_test, y_pred, alpha=0.3, s=4, color="tab:blue")
lo = float(min(y_test.min(), y_pred.min()))
hi = float(max(y_test.max(), y_pred.max()))
axes.plot([lo, hi], [lo, hi], "r--")
axes.set_xlabel("actual")
axes.set_ylabel("predicted")
mlflow.log_figure(figure, "pred_vs_actual.png")
plt.close(figure)
''',
}

# Alice's code with every name changed, other literals, comments, and another layout.
BOB_COPY = {
    "todo2": '''mlflow.end_run()
# my parameters
p = dict(
    model_type="RandomForestRegressor",
    n_estimators=N_ESTIMATORS,
    max_depth=MAX_DEPTH,
    random_state=SEED,
    test_size=TEST_SIZE,
)
active = mlflow.start_run(run_name=RUN_NAME)
for k, v in p.items():  # one at a time
    mlflow.log_param(k, v)
''',
    "todo3": '''results = {}
for metric_name, func in [('rmse', root_mean_squared_error), ('mae', mean_absolute_error), ('r2', r2_score)]:
    results[metric_name] = float(func(y_test, y_pred))
    print(f"{metric_name} = {results[metric_name]:.2f}")

metrics = results
for metric_name, val in metrics.items():
    mlflow.log_metric(metric_name, val)   # log it
metrics
''',
    "todo4": '''f = plt.figure(figsize=(5, 5))
ax1 = f.add_subplot(1, 1, 1)
ax1.scatter(y_test, y_pred, alpha=0.5, s=2, color="green")
a = float(min(y_test.min(), y_pred.min()))
b = float(max(y_test.max(), y_pred.max()))
ax1.plot([a, b], [a, b], "k-")
ax1.set_xlabel("true response time")
ax1.set_ylabel("predicted response time")
mlflow.log_figure(f, "pred_vs_actual.png")
plt.close(f)
''',
}

# Written independently: the same tasks solved another way.
CAROL = {
    "todo2": '''mlflow.end_run()
run = mlflow.start_run(run_name=RUN_NAME)
mlflow.log_params({"model_type": "RandomForestRegressor", "n_estimators": N_ESTIMATORS,
                   "max_depth": MAX_DEPTH, "random_state": SEED, "test_size": TEST_SIZE})
''',
    "todo3": '''errors = y_test - y_pred
metrics = {
    "rmse": float((errors ** 2).mean() ** 0.5),
    "mae": float(errors.abs().mean()),
    "r2": float(1 - (errors ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum()),
}
mlflow.log_metrics(metrics)
metrics
''',
    "todo4": '''import numpy as np
fig, ax = plt.subplots()
ax.scatter(y_test.to_numpy(), y_pred, s=3)
line = np.linspace(y_test.min(), y_test.max(), 50)
ax.plot(line, line, color="grey")
ax.set_title("predicted vs actual")
mlflow.log_figure(fig, "pred_vs_actual.png")
''',
}


def _write(folder: Path, student: str, nb: nbformat.NotebookNode) -> tuple[str, str, Path]:
    path = folder / student / LAB01.lab_id / f"{LAB01.lab_id}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    return student, LAB01.lab_id, path


def _class(tmp_path: Path) -> list[tuple[str, str, Path]]:
    return [
        _write(tmp_path, "alice", make_submission({1, 5}, replace=ALICE)),
        _write(tmp_path, "bob", make_submission({1, 5}, replace=BOB_COPY)),
        _write(tmp_path, "carol", make_submission({1, 5}, replace=CAROL)),
        _write(tmp_path, "dave", make_submission({1, 2, 3, 4, 5})),  # the master's own answers
        _write(tmp_path, "erin", make_submission(set())),  # the starter code, untouched
        _write(tmp_path, "frank", make_submission(set())),
    ]


@pytest.mark.parametrize(("students", "flagged"), [
    (None, [("alice", "bob")]),
    # With fewer than five students nothing is discounted as an idiom of the class.
    ({"alice", "bob", "carol"}, [("alice", "bob")]),
    ({"alice", "carol", "dave"}, []),
], ids=["whole-class", "small-class-with-the-copy", "small-class-without-it"])
def test_a_renamed_reformatted_copy_is_found_and_independent_work_is_not(
    tmp_path: Path, students: set[str] | None, flagged: list[tuple[str, str]]
) -> None:
    subs = [s for s in _class(tmp_path) if students is None or s[0] in students]
    pairs = similarity.class_similarity(subs)
    assert [(p.a, p.b) for p in pairs] == flagged
    for pair in pairs:  # the copy: nearly all of it, in each TODO Bob copied
        assert pair.share > 0.9
        assert [c[0] for c in pair.cells] == ["todo2", "todo3", "todo4"]


def test_normalisation_hides_names_literals_comments_and_layout() -> None:
    one = similarity.normalise("x = f(1, 'a')  # note\nprint(x.mean())\n")
    other = similarity.normalise("result   =   f(\n    2,\n    \"b\",\n)\n\nprint(result.mean())")
    assert one == other and ".mean" in one
    assert similarity.normalise("x = f(1)") != similarity.normalise("x = g.h(1)")


def test_the_report_shows_the_shared_code_side_by_side_escaped(tmp_path: Path) -> None:
    subs = _class(tmp_path)[:2]
    page = similarity.report_html(similarity.class_similarity(subs))
    assert "alice" in page and "bob" in page and "<pre>" in page
    assert "ax1.scatter" in page and "axes.scatter" in page
    assert "<script" not in similarity.report_html([similarity.Pair("01", "<script>", "b", 1, 20, [
        ("todo1", "<script>alert(1)</script>", "x", 1.0)])])


@pytest.mark.parametrize("text", ['{"cells": "nope"}', "not json"], ids=["cells-not-a-list", "not-json"])
def test_files_that_are_not_notebooks_have_no_code_to_compare(tmp_path: Path, text: str) -> None:
    bad = tmp_path / "x.ipynb"
    bad.write_text(text)
    assert similarity.todo_cells(bad) == {}


def test_code_nested_too_deep_to_parse_is_still_normalised() -> None:
    deep = "(" * 5000 + ")" * 5000
    assert isinstance(similarity.normalise(deep), list)


def test_a_copy_padded_with_code_of_its_own_is_still_found(tmp_path: Path) -> None:
    """The cheat against a symmetric score: dilute the copy with unrelated code, some of it not
    even valid Python (so that the cell cannot be parsed). The share is taken of the smaller
    submission's own code, and code that does not parse is still compared token by token."""
    shapes = ["x = [v * 2 for v in range(9) if v % 2]", "y = {k: str(k) for k in 'abc'}",
              "while len(z) < 3:\n    z.append(len(z) ** 2)", "def f(a, b=1):\n    return a - b / 2",
              "try:\n    w = int('7')\nexcept ValueError as e:\n    w = -1", "q = sorted(x, key=abs)[::-1]",
              "with open('f') as h:\n    t = h.read().split()", "class K:\n    n = 0\n    def m(self):\n        return self.n",
              "r = lambda s: s.strip().lower()", "assert not w or w > 0, 'odd'"]
    padding = "\n".join(shapes[i % 10] if i < 10 else f"if z:\n    {shapes[i % 10].splitlines()[0]}" for i in range(20))
    padded = {**BOB_COPY, "todo4": BOB_COPY["todo4"] + "\n" + padding + "\n"}
    subs = [_write(tmp_path, "alice", make_submission({1, 5}, replace=ALICE)),
            _write(tmp_path, "bob", make_submission({1, 5}, replace=padded)),
            _write(tmp_path, "carol", make_submission({1, 5}, replace=CAROL))]
    [pair] = similarity.class_similarity(subs)
    assert (pair.a, pair.b) == ("alice", "bob")
    own = {s: sum(len(similarity.cell_fingerprint(c)) for c in similarity.todo_cells(p).values())
           for s, _, p in subs}
    jaccard = pair.shared / (own["alice"] + own["bob"] - pair.shared)
    assert jaccard < similarity.THRESHOLD  # the padding would have hidden it from a symmetric score


def test_a_class_of_many_copies_keeps_the_report_readable(tmp_path: Path) -> None:
    pairs = [similarity.Pair("01_tracking", f"s{i}", f"t{i}", 0.9, 40, [("todo1", "a", "b", 0.9)])
             for i in range(similarity.MAX_DETAILED + 5)]
    page = similarity.report_html(pairs)
    assert page.count("<table class='pair'>") == similarity.MAX_DETAILED
    assert "5 more pair(s)" in page and "s34 and t34" in page
