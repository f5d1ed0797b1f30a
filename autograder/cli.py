"""Command line: ``python -m autograder grade NOTEBOOK... [--json FILE]`` and friends.

Exit codes: 0 when every notebook was graded (whatever its score), 2 when one could not
be graded at all (its one-line reason is printed), 1 for a stale ``generate --check``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path

from autograder.course import ROOT, SOURCE_LANGUAGE
from autograder.grade import DEFAULT_CELL_TIMEOUT, DEFAULT_TOTAL_TIMEOUT
from autograder.kit.i18n import LANGUAGES
from autograder.results import GradeResult

Command = Callable[[argparse.Namespace], int]


def one_line_errors(key_error: str = "{}") -> Callable[[Command], Command]:
    """A command's bad input (``ValueError``, ``OSError``, ``KeyError``) becomes the one line
    ``error: ...`` on stderr and exit code 2, never a traceback. ``key_error`` says what a
    missing key means to this command (``"no such lab: {}"``)."""

    def decorate(command: Command) -> Command:
        @wraps(command)
        def run(args: argparse.Namespace) -> int:
            try:
                return command(args)
            except KeyError as exc:
                print(f"error: {key_error.format(exc.args[0] if exc.args else exc)}", file=sys.stderr)
            except (ValueError, OSError) as exc:
                print(f"error: {exc}", file=sys.stderr)
            return 2

        return run

    return decorate


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
    cls.add_argument("--jobs", type=int, default=None, metavar="N",
                     help="worker processes of the local Dask cluster (default: cores)")
    cls.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="grade on the workers of this Dask scheduler (tcp://host:8786) instead of locally")
    cls.add_argument("--engine", choices=("dask", "pool"), default="dask",
                     help="dask (default) or pool: the process pool that graded classes before Dask, locally")
    cls.add_argument("--due", type=_datetime, default=None, metavar="WHEN",
                     help="due date, ISO 8601 (e.g. 2026-12-01T23:59+01:00; UTC if no offset): adds a late column")
    cls.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, metavar="S")
    cls.add_argument("--timeout", type=float, default=DEFAULT_TOTAL_TIMEOUT, metavar="S")
    _inputs_options(cls)
    _class_options(cls)
    cls.add_argument("--no-similarity", action="store_true", help="leave the similarity report out")

    rel = sub.add_parser("release", help="build the student bundle (no solutions, no hidden tests)")
    rel.add_argument("--lab", action="append", default=None, metavar="LAB", help="only this lab (repeatable)")
    rel.add_argument("--out", type=Path, default=None, metavar="PATH",
                     help="the zip (default dist/student-bundle.zip); with --roster, the folder of bundles "
                          "(default dist/students)")
    rel.add_argument("--lang", default=None, choices=list(LANGUAGES),
                     help="only this language's bundle (default: one bundle per language)")
    rel.add_argument("--roster", type=Path, default=None, metavar="CSV",
                     help="one bundle per student of the roster, each with its own variant (needs --variants)")
    rel.add_argument("--variants", type=Path, default=None, metavar="SECRET",
                     help="the instructor secret file that derives each student's variant")

    var = sub.add_parser("variants", help="create the instructor secret that derives per-student variants")
    var.add_argument("--init", type=Path, required=True, metavar="SECRET", help="where to write a new secret")

    sim = sub.add_parser("similarity", help="report pairs of students with suspiciously similar TODO code")
    sim.add_argument("submissions", type=Path, metavar="SUBMISSIONS")
    sim.add_argument("--out", type=Path, required=True, metavar="DIR", help="where similarity.html goes")

    reg = sub.add_parser("regrade", help="regrade one student's lab, or one check of a lab for the whole class")
    reg.add_argument("submissions", type=Path, metavar="SUBMISSIONS")
    reg.add_argument("--out", type=Path, required=True, metavar="DIR", help="the class's output folder")
    reg.add_argument("--lab", required=True, metavar="LAB")
    who = reg.add_mutually_exclusive_group(required=True)
    who.add_argument("--student", metavar="ID", help="regrade this student's lab")
    who.add_argument("--check", metavar="CHECK", help="regrade this check for every submission of the lab")
    reg.add_argument("--why", required=True, metavar="TEXT", help="the reason, kept in the regrade log")
    reg.add_argument("--by", default=None, metavar="NAME", help="who regrades (default: your user name)")
    reg.add_argument("--jobs", type=int, default=None, metavar="N")
    reg.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, metavar="S")
    reg.add_argument("--timeout", type=float, default=DEFAULT_TOTAL_TIMEOUT, metavar="S")
    reg.add_argument("--no-sandbox", action="store_true", help="ONLY for notebooks you trust")
    _class_options(reg)

    exp = sub.add_parser("export", help="rewrite grades, feedback, report and exports of a graded class")
    exp.add_argument("submissions", type=Path, metavar="SUBMISSIONS")
    exp.add_argument("--out", type=Path, required=True, metavar="DIR", help="the class's output folder")
    _class_options(exp)

    lab = sub.add_parser("lab", help="JupyterLab on the labs, with the MLflow UI on the course store")
    lab.add_argument("--port", type=int, default=5000, help="the MLflow UI's port (default 5000)")

    srv = sub.add_parser("class-server", help="run the class's MLflow server: PostgreSQL, logins, one workspace each")
    srv.add_argument("--roster", type=Path, required=True, metavar="CSV", help="student_id,name,email: one account each")
    srv.add_argument("--data", type=Path, default=Path("class-server"), metavar="DIR",
                     help="where the database, the artifacts and the accounts are kept (default ./class-server)")
    srv.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every interface)")
    srv.add_argument("--port", type=int, default=5000)
    srv.add_argument("--workers", type=int, default=2, help="the server's worker processes (default 2)")

    st = sub.add_parser("store", help="print the course-level MLflow store's tracking URI")
    st.add_argument("--init", action="store_true", help="create the store first if it is missing")
    st.add_argument("--artifacts", action="store_true", help="print its artifact root instead")

    gen = sub.add_parser("generate", help="regenerate labs/ from the masters in solutions/")
    gen.add_argument("--check", action="store_true", help="only report stale student notebooks")

    tr = sub.add_parser("translate", help="translators' tools: status, a skeleton to translate, the message catalog")
    tr.add_argument("action", choices=["status", "skeleton", "catalog"],
                    help="status: what is missing or stale; skeleton: add the missing cells in English to "
                         "the lab's translation file; catalog: merge the current English messages into the "
                         "language's PO file")
    tr.add_argument("labs", nargs="*", help="lab ids (default: every lab)")
    tr.add_argument("--lang", default="es", help="the language (default es)")
    return parser


def _inputs_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run the notebooks without a sandbox: ONLY for notebooks you trust")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="hidden seed (default: a fresh one; for class, kept in OUT/.hidden-seed)")
    parser.add_argument("--course-data", action="store_true",
                        help="grade on the course's own data and seed instead of hidden inputs")


def _class_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--roster", type=Path, default=None, metavar="CSV",
                        help="the class roster (student_id, name, email, canvas_id, ...), for the exports")
    parser.add_argument("--variants", type=Path, default=None, metavar="SECRET",
                        help="grade each student on their own variant, derived with this instructor secret")
    parser.add_argument("--late-policy", type=Path, default=None, metavar="CSV",
                        help="lab,due,penalty_per_day[,max_penalty]: due dates and the penalty per day late")
    parser.add_argument("--extensions", type=Path, default=None, metavar="CSV",
                        help="student_id,lab,due or student_id,lab,days: per-student extensions")


def _options(args: argparse.Namespace):  # noqa: ANN202 - ClassOptions, imported lazily
    """The class options from the command line; a one-line ValueError for bad files."""
    from autograder.classroom import ClassOptions
    from autograder.late import LatePolicy, read_extensions, read_policy
    from autograder.roster import read_roster
    from autograder.variants import read_secret

    policy = None
    if args.late_policy is not None:
        policy = read_policy(args.late_policy, args.extensions)
    elif args.extensions is not None:
        if getattr(args, "due", None) is None:
            raise ValueError("--extensions needs --late-policy (or --due)")
        policy = LatePolicy.everywhere(args.due)
        policy.extensions = read_extensions(args.extensions)
    elif getattr(args, "due", None) is not None:
        policy = LatePolicy.everywhere(args.due)
    return ClassOptions(
        policy=policy,
        roster=read_roster(args.roster) if args.roster else None,
        secret=read_secret(args.variants) if args.variants else None,
        similarity=not getattr(args, "no_similarity", False),
    )


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
        editions = generate.stale_editions()
        for lab, lang, issues in editions:
            print(f"stale: {lab.student_in(lang)} ({issues[0] if issues else 'run `make labs`'})", file=sys.stderr)
        return 1 if stale or editions else 0
    changed = generate.write_all()
    print("\n".join(f"wrote {lab.student}" for lab in changed) or "labs/ is up to date")
    written, blocked = generate.write_editions()
    print("\n".join(f"wrote {p.relative_to(ROOT)}" for p in written) or "translated editions are up to date")
    for line in blocked:
        print(f"not generated: {line}", file=sys.stderr)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    """Translators' tools: what is left to translate, a file to start from, the catalogs."""
    from autograder import catalog, translation
    from autograder.course import LABS

    unknown = [lab_id for lab_id in args.labs if lab_id not in LABS]
    if unknown:
        print(f"no such lab: {', '.join(unknown)} (labs: {', '.join(LABS)})", file=sys.stderr)
        return 2
    labs = [LABS[lab_id] for lab_id in args.labs] if args.labs else list(LABS.values())
    if args.action == "skeleton":
        for lab in labs:
            p, added = translation.skeleton(lab, args.lang)
            print(f"{p.relative_to(ROOT)}: {added} cell(s) added in English, to translate")
        return 0
    if args.action == "catalog":
        total, missing = catalog.update(args.lang)
        print(f"{i18n_path(args.lang)}: {total} messages, {missing} to translate")
        return 0
    issues = [line for lab in labs for line in translation.problems(lab, args.lang)]
    issues += catalog.problems(args.lang) if not args.labs else []
    print("\n".join(issues) or f"every cell and message is translated into {args.lang} and current")
    return 1 if issues else 0


def i18n_path(lang: str) -> str:
    from autograder.kit import i18n

    return str(i18n.catalog_dir(lang).relative_to(ROOT)) + "/*.po"


@one_line_errors()
def cmd_class(args: argparse.Namespace) -> int:
    from autograder.classroom import Cluster, grade_class

    sandboxed = _sandbox_choice(args)
    if sandboxed is None:
        return 2
    seed = -1 if args.course_data else args.seed
    if args.course_data and args.variants:
        raise ValueError("--course-data and --variants exclude each other: one set of data per grading")
    if args.engine == "pool" and args.scheduler:
        raise ValueError("--scheduler needs --engine dask: the process pool grades on this machine only")
    cluster = Cluster(jobs=args.jobs or 0, scheduler=args.scheduler, engine=args.engine)
    summary = grade_class(args.submissions, args.out, cluster, None, args.cell_timeout, args.timeout,
                          sandboxed=sandboxed, seed=seed, options=_options(args))
    print(f"graded {summary.graded_now}, kept {summary.kept} from an earlier run")
    _print_outputs(args.out)
    return 0


def _print_outputs(out: Path) -> None:
    for name in ("grades.csv", "class_report.html", "feedback", "canvas.csv", "moodle.csv", "gradescope"):
        print(f"  {out / name}")


@one_line_errors(key_error="no such lab: {}")
def cmd_release(args: argparse.Namespace) -> int:
    from autograder.release import build_bundle, build_student_bundles

    if args.roster is not None or args.variants is not None:
        from autograder.roster import read_roster
        from autograder.variants import read_secret

        if args.roster is None or args.variants is None:
            raise ValueError("per-student bundles need both --roster and --variants")
        roster, secret = read_roster(args.roster), read_secret(args.variants)
        out = args.out or Path("dist/students")
        bundles = build_student_bundles(out, sorted(roster), secret, args.lab, lang=args.lang or SOURCE_LANGUAGE)
        print(f"wrote {len(bundles)} bundles, one per student, in {out}")
        return 0
    from autograder.course import EDITIONS
    from autograder.release import bundle_name

    langs = [args.lang] if args.lang else [SOURCE_LANGUAGE, *EDITIONS]
    if args.out and len(langs) > 1:
        raise ValueError("--out names one file: give --lang too")
    for lang in langs:
        bundle = build_bundle(args.out or Path("dist") / bundle_name(lang), args.lab, lang)
        print(f"wrote {bundle}")
    return 0


@one_line_errors()
def cmd_variants(args: argparse.Namespace) -> int:
    from autograder.variants import create_secret

    create_secret(args.init)
    print(f"wrote a new instructor secret to {args.init}: keep it, never share it or commit it")
    return 0


@one_line_errors()
def cmd_similarity(args: argparse.Namespace) -> int:
    from autograder import similarity
    from autograder.classroom import submissions_of

    with submissions_of(args.submissions) as (_, subs):
        pairs = similarity.class_similarity([(s.student_id, s.lab, s.path) for s in subs])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "similarity.html").write_text(similarity.report_page(pairs), encoding="utf-8")
    for row in similarity.as_rows(pairs):
        print(f"{row['lab']}: {row['a']} ~ {row['b']}  {row['share']:.0%} shared ({row['todos']})")
    print(f"{len(pairs)} suspicious pair(s); side by side in {args.out / 'similarity.html'}")
    return 0


@one_line_errors()
def cmd_regrade(args: argparse.Namespace) -> int:
    from autograder.regrade import regrade

    sandboxed = _sandbox_choice(args)
    if sandboxed is None:
        return 2
    entries = regrade(args.submissions, args.out, args.lab, args.why, student=args.student, check=args.check,
                      who=args.by, options=_options(args), jobs=args.jobs, cell_timeout=args.cell_timeout,
                      total_timeout=args.timeout, sandboxed=sandboxed)
    for e in entries:
        print(f"{e['student_id']} {e['lab']}: {e['old_score']} -> {e['new_score']}")
    print(f"regraded {len(entries)}; logged in {args.out / 'regrade-log.jsonl'}")
    _print_outputs(args.out)
    return 0


@one_line_errors()
def cmd_export(args: argparse.Namespace) -> int:
    from autograder import classroom

    if not (args.out / "results").is_dir():
        raise FileNotFoundError(f"{args.out}: no graded class here (run `class` first)")
    options = _options(args)
    if options.policy is None:
        options.policy = classroom.kept_policy(args.out)
    classroom._check_settings(args.out, options)
    with classroom.submissions_of(args.submissions) as (root, subs):
        done, todo = classroom.pending_jobs(subs, root, args.out / "results", 0, 0,
                                            classroom.class_seed(args.out, None), options.secret)
        if todo:
            print(f"note: {len(todo)} submission(s) have no grade yet and are left out", file=sys.stderr)
        classroom.write_class_outputs(done, args.out, options, subs)
    _print_outputs(args.out)
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    from autograder.launch import lab

    return lab(args.port)


@one_line_errors()
def cmd_class_server(args: argparse.Namespace) -> int:
    from autograder.classserver import serve

    return serve(args.roster, args.data, args.host, args.port, args.workers)


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
            "translate": cmd_translate,
            "store": cmd_store,
            "lab": cmd_lab,
            "variants": cmd_variants,
            "similarity": cmd_similarity,
            "regrade": cmd_regrade,
            "export": cmd_export,
            "class-server": cmd_class_server,
        }[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
