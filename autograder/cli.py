"""Command line: ``python -m autograder grade NOTEBOOK... [--json FILE]`` and friends.

Exit codes: 0 when every notebook was graded (whatever its score), 2 when one could not
be graded at all (its one-line reason is printed), 1 for a stale ``generate --check``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from autograder.grade import DEFAULT_CELL_TIMEOUT, DEFAULT_TOTAL_TIMEOUT
from autograder.results import GradeResult


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autograder", description="Grade the course's lab notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)

    grade = sub.add_parser("grade", help="grade one or more notebooks")
    grade.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK")
    grade.add_argument("--json", type=Path, metavar="FILE", help="write the results as a JSON array")
    grade.add_argument(
        "--feedback-dir", type=Path, default=Path("feedback"), metavar="DIR",
        help="where to write one Markdown feedback file per notebook (default: ./feedback)",
    )
    grade.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, metavar="S",
                       help=f"seconds one cell may run (default {DEFAULT_CELL_TIMEOUT:g})")
    grade.add_argument("--timeout", type=float, default=DEFAULT_TOTAL_TIMEOUT, metavar="S",
                       help=f"seconds a whole notebook may run (default {DEFAULT_TOTAL_TIMEOUT:g})")
    grade.add_argument("--keep", action="store_true", help="keep each submission's working directory")
    _inputs_options(grade)
    grade.add_argument("--own", action="store_true",
                       help="grading your own notebook: without a sandbox on this machine, run it unsandboxed (and say so)")

    cls = sub.add_parser("class", help="grade a whole class of submissions in parallel (resumable)")
    cls.add_argument("submissions", type=Path, metavar="SUBMISSIONS",
                     help="nbgrader's submitted/ layout, a folder of notebooks named by student, or a zip")
    cls.add_argument("--out", type=Path, required=True, metavar="DIR", help="where grades and feedback go")
    cls.add_argument("--jobs", type=int, default=None, metavar="N", help="worker processes (default: cores)")
    cls.add_argument("--due", type=_datetime, default=None, metavar="WHEN",
                     help="due date, ISO 8601 (e.g. 2026-12-01T23:59+01:00; UTC if no offset): adds a late column")
    cls.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, metavar="S")
    cls.add_argument("--timeout", type=float, default=DEFAULT_TOTAL_TIMEOUT, metavar="S")
    _inputs_options(cls)

    rel = sub.add_parser("release", help="build the student bundle (no solutions, no hidden tests)")
    rel.add_argument("--lab", action="append", default=None, metavar="LAB", help="only this lab (repeatable)")
    rel.add_argument("--out", type=Path, default=Path("dist/student-bundle.zip"), metavar="ZIP")

    lab = sub.add_parser("lab", help="JupyterLab on the labs, with the MLflow UI on the course store")
    lab.add_argument("--port", type=int, default=5000, help="the MLflow UI's port (default 5000)")

    st = sub.add_parser("store", help="print the course-level MLflow store's tracking URI")
    st.add_argument("--init", action="store_true", help="create the store first if it is missing")
    st.add_argument("--artifacts", action="store_true", help="print its artifact root instead")

    gen = sub.add_parser("generate", help="regenerate labs/ from the masters in solutions/")
    gen.add_argument("--check", action="store_true", help="only report stale student notebooks")
    return parser


def _inputs_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run the notebooks without a sandbox: ONLY for notebooks you trust")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="hidden seed (default: a fresh one; for class, kept in OUT/.hidden-seed)")
    parser.add_argument("--course-data", action="store_true",
                        help="grade on the course's own data and seed instead of hidden inputs")


def _sandbox_choice(args: argparse.Namespace) -> bool | None:
    """Whether to sandbox; None (after a one-line error) when grading cannot be safe."""
    from autograder import sandbox

    if args.no_sandbox:
        print("warning: --no-sandbox: the notebooks run with your permissions, unisolated", file=sys.stderr)
        return False
    why = sandbox.unavailable_reason()
    if why is None:
        return True
    if getattr(args, "own", False):
        print(f"note: no sandbox here ({why}); grading your own notebook unsandboxed", file=sys.stderr)
        return False
    print(f"error: {sandbox.UNAVAILABLE.format(why=why)}", file=sys.stderr)
    return None


def _inputs(args: argparse.Namespace):  # noqa: ANN202 - HiddenInputs, imported lazily
    from autograder import hidden

    if args.course_data:
        return hidden.course_inputs()
    return hidden.hidden_inputs(args.seed if args.seed is not None else hidden.new_seed())


def _datetime(text: str) -> datetime:
    """An ISO 8601 date-time for argparse; without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _failed(path: Path, reason: str) -> GradeResult:
    return GradeResult(path=str(path), lab=None, score=0.0, max_score=0.0, errors=[reason])


def cmd_grade(args: argparse.Namespace) -> int:
    from autograder.grade import grade_notebook
    from autograder.notebook import GradingError
    from autograder.report import table, write_feedback

    results: list[GradeResult] = []
    written: set[Path] = set()
    could_not = 0
    sandboxed = _sandbox_choice(args)
    if sandboxed is None:
        return 2
    inputs = _inputs(args)
    for i, path in enumerate(args.notebooks, 1):
        print(f"[{i}/{len(args.notebooks)}] grading {path} ...", file=sys.stderr, flush=True)
        try:
            result = grade_notebook(path, args.cell_timeout, args.timeout, args.keep, sandboxed, inputs)
        except GradingError as exc:
            reason = str(exc)
        except Exception as exc:  # the grader's own failure: one line, and on to the next notebook
            reason = f"{path}: could not grade ({type(exc).__name__}: {exc})"
        else:
            results.append(result)
            print(table(result))
            print(f"  feedback: {write_feedback(result, args.feedback_dir, written)}")
            continue
        could_not += 1
        print(f"error: {reason}", file=sys.stderr)
        results.append(_failed(path, reason))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n", encoding="utf-8")
    return 2 if could_not else 0


def cmd_generate(args: argparse.Namespace) -> int:
    from autograder import generate

    if args.check:
        stale = generate.stale_labs()
        for lab in stale:
            print(f"stale: {lab.student} (run `make labs`)", file=sys.stderr)
        return 1 if stale else 0
    changed = generate.write_all()
    print("\n".join(f"wrote {lab.student}" for lab in changed) or "labs/ is up to date")
    return 0


def cmd_class(args: argparse.Namespace) -> int:
    from autograder.classroom import grade_class

    sandboxed = _sandbox_choice(args)
    if sandboxed is None:
        return 2
    seed = -1 if args.course_data else args.seed
    try:
        summary = grade_class(args.submissions, args.out, args.jobs, args.due, args.cell_timeout, args.timeout,
                              sandboxed=sandboxed, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"graded {summary.graded_now}, kept {summary.kept} from an earlier run")
    for name in ("grades.csv", "class_report.html", "feedback"):
        print(f"  {args.out / name}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from autograder.release import build_bundle

    try:
        bundle = build_bundle(args.out, args.lab)
    except KeyError as exc:
        print(f"error: no such lab: {exc.args[0]}", file=sys.stderr)
        return 2
    print(f"wrote {bundle}")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    from autograder.launch import lab

    return lab(args.port)


def cmd_store(args: argparse.Namespace) -> int:
    from autograder import course
    from autograder.kit import labkit

    uri = labkit.course_store_uri()
    if args.init and not (course.STORE_DIR / "mlflow.db").exists():
        from autograder import store

        course.STORE_DIR.mkdir(parents=True, exist_ok=True)
        store.create(course.STORE_DIR / "mlflow.db")
    print(labkit.artifact_root_for(uri) if args.artifacts else uri)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {
            "grade": cmd_grade,
            "class": cmd_class,
            "release": cmd_release,
            "generate": cmd_generate,
            "store": cmd_store,
            "lab": cmd_lab,
        }[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
