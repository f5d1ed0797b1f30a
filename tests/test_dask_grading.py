"""Grading a class on Dask: on a cluster whose workers are separate processes, reached by its
scheduler's address as a real cluster would be, with the grades ``class`` gives locally.

Progress, resume, Ctrl+C and a crashing submission on the default local cluster are tested in
test_classroom.py (``class`` grades on Dask by default)."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from autograder import classroom, cli
from tests.conftest import grading, make_submission
from tests.test_classroom import write_class

# A full, a partial and a submission whose kernel dies: three kinds of row, on two workers.
CLASS = {
    "d01-full": (lambda: make_submission(done={1, 2, 3, 4, 5}), 10),
    "d02-partial": (lambda: make_submission(done={2, 4}), 4),
    "d03-kernel-crash": (
        lambda: make_submission(done={1, 2, 3, 4, 5}, replace={"todo3": "import os\nos._exit(3)"}),
        3,
    ),
}


@pytest.fixture()
def cluster() -> Iterator[object]:
    """A Dask cluster of two worker processes, one thread each, started apart from the grader."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": False},
            silence_logs=logging.ERROR,
        ) as local,
        Client(local) as client,
    ):
        yield client


@grading
def test_a_class_grades_on_the_workers_of_a_scheduler(tmp_path: Path, cluster: object) -> None:
    from dask.distributed import Client, get_task_stream

    client: Client = cluster  # type: ignore[assignment]
    source, out = write_class(tmp_path / "in", CLASS), tmp_path / "out"
    workers = client.run(os.getpid)
    assert len(workers) == 2 and os.getpid() not in workers.values()

    where = classroom.Cluster(scheduler=client.scheduler.address)
    with get_task_stream(client) as stream:
        summary = classroom.grade_class(
            source, out, where, cell_timeout=60, total_timeout=120, progress=False
        )
    assert (summary.graded_now, summary.kept) == (len(CLASS), 0)
    with open(out / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert {s: float(rows[s]["score"]) for s in CLASS} == {s: float(score) for s, (_, score) in CLASS.items()}
    assert "kernel died" in rows["d03-kernel-crash"]["error"]
    # One task per submission, each run by a worker of the cluster; once the class is done, no
    # worker keeps a grading process.
    tasks = [t for t in stream.data if str(t["key"]).startswith("grade-")]
    assert len(tasks) == len(CLASS) and {t["worker"] for t in tasks} <= set(workers)
    assert set(client.run(lambda: classroom._grader is None).values()) == {True}
    # A second run resumes from the result files the workers wrote: nothing is graded twice.
    again = classroom.grade_class(source, out, where, progress=False)
    assert (again.graded_now, again.kept) == (0, len(CLASS))


def test_a_scheduler_that_does_not_answer_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classroom, "SCHEDULER_TIMEOUT", "2s")
    nb = tmp_path / "in" / "alice" / "01_tracking.ipynb"
    nb.parent.mkdir(parents=True)
    import nbformat

    nbformat.write(make_submission(done=set()), nb)
    code = cli.main(
        [
            "class",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "out"),
            "--no-sandbox",
            "--scheduler",
            "tcp://127.0.0.1:9",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "tcp://127.0.0.1:9" in err and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.splitlines()[-1]]
    assert not list((tmp_path / "out" / "results").glob("*.json"))


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="no such grading engine"):
        classroom.run_jobs([{"display": "x"}], classroom.Cluster(engine="threads"), progress=False)


def test_the_process_pool_grades_on_this_machine_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    args = ["class", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-sandbox", "--engine", "pool"]
    assert cli.main([*args, "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: --scheduler needs --engine dask: the process pool grades on this machine only"
    )
