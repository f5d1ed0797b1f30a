"""Generate the course dataset: API response time from server metrics.

Run ``python data/make_data.py`` to (re)write the CSV files next to this script, or
``python data/make_data.py --out DIR`` to write them somewhere else.

Why it is built this way:

* Deterministic. One fixed seed feeds a ``numpy.random.SeedSequence`` that is split into one
  independent stream per output file, so changing how one file is drawn does not shift the
  random numbers of the others. The same script therefore gives byte-identical files on
  every run, and ``tests/test_data.py`` checks the committed CSVs against a fresh run.
* Byte-stable output. Every float column is formatted with a fixed number of decimals and the
  files are written with ``\\n`` line endings, so last-bit floating-point differences between
  machines almost never reach the files.
* Realistic enough to be worth modelling. Response time grows like a queue, ``1 / (1 - u)``,
  as CPU utilisation ``u`` nears saturation, memory pressure adds a swap penalty, and network
  latency and disk I/O add on top; noise is multiplicative (log-normal) and a few rows are
  spikes. A linear model only gets part of this; a random forest gets most of it.
* Ready for the drift lab. The production batches reuse the same simulator with changed
  inputs (feature drift) or a changed input-to-output rule part-way through (concept drift).

Only numpy and pandas are used. See ``data/README.md`` for the data card.
"""

import argparse
import pathlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

SEED = 20260105
START = pd.Timestamp("2026-01-05T00:00:00Z")
FREQ = pd.Timedelta(minutes=5)

N_MAIN = 4000
N_BATCH = 1000

REGIONS = ("eu-west", "us-east", "ap-south")
REGION_PROBS = (0.50, 0.35, 0.15)
DRIFT_REGION_PROBS = (0.25, 0.35, 0.40)
# Per region, in the order of REGIONS: typical network latency (ms) and a small direct
# multiplier on response time (e.g. a farther database replica).
REGION_LATENCY_MS = (18.0, 26.0, 42.0)
REGION_FACTOR = (1.00, 1.04, 1.10)

USERS_MEDIAN = 180.0
DRIFT_USERS_FACTOR = 1.6
DRIFT_CPU_EXTRA = 5.0
UTIL_CAP = 0.93
BASE_MS = 25.0
USERS_SCALE = 600.0
SWAP_COEF = 0.5
NOISE_SIGMA = 0.08
SPIKE_RATE = 0.005
SPIKE_FACTOR = (2.0, 3.0)
CONCEPT_CHANGE_FRACTION = 0.4
SLOW_DEPENDENCY_FACTOR = 1.5
SLOW_DEPENDENCY_MS = 120.0

COLUMNS = [
    "timestamp",
    "cpu_usage",
    "memory_usage",
    "disk_io",
    "network_latency",
    "concurrent_users",
    "region",
    "response_time_ms",
]
# Decimals written for each float column.
DECIMALS = {
    "cpu_usage": 1,
    "memory_usage": 1,
    "disk_io": 2,
    "network_latency": 2,
    "response_time_ms": 1,
}


@dataclass(frozen=True)
class Scenario:
    """How one file is simulated."""

    name: str
    n_rows: int
    start_index: int
    users_factor: float = 1.0
    cpu_extra: float = 0.0
    region_probs: tuple[float, ...] = REGION_PROBS
    concept_change_at: int | None = None


SCENARIOS = (
    Scenario("devops_metrics.csv", N_MAIN, 0),
    Scenario("production/batch_no_drift.csv", N_BATCH, N_MAIN),
    Scenario(
        "production/batch_feature_drift.csv",
        N_BATCH,
        N_MAIN + N_BATCH,
        users_factor=DRIFT_USERS_FACTOR,
        cpu_extra=DRIFT_CPU_EXTRA,
        region_probs=DRIFT_REGION_PROBS,
    ),
    Scenario(
        "production/batch_concept_drift.csv",
        N_BATCH,
        N_MAIN + 2 * N_BATCH,
        concept_change_at=int(CONCEPT_CHANGE_FRACTION * N_BATCH),
    ),
)


def response_time(
    cpu: np.ndarray,
    mem: np.ndarray,
    disk: np.ndarray,
    latency: np.ndarray,
    users: np.ndarray,
    region_factor: np.ndarray,
) -> np.ndarray:
    """Noise-free response time (ms) for the given metrics.

    A queue on the CPU (waiting time grows like 1 / (1 - u)), slowed further by swapping when
    memory is nearly full, plus disk time and two network trips (client and one downstream
    call), times a small per-region factor.
    """
    u = np.minimum(cpu / 100.0, UTIL_CAP)
    m = np.minimum(mem / 100.0, UTIL_CAP)
    service = BASE_MS * (1.0 + users / USERS_SCALE)  # per-request work grows with contention
    queue = service / (1.0 - u)  # M/M/1-style waiting time
    swap = 1.0 + SWAP_COEF * np.maximum(0.0, m - 0.7) / (1.0 - m)  # memory pressure
    return (queue * swap + 0.6 * disk + 2.0 * latency) * region_factor


def simulate(rng: np.random.Generator, sc: Scenario) -> pd.DataFrame:
    """Simulate one file's rows.

    Load drives everything: concurrent users set CPU, and CPU and users push memory and disk
    I/O up. Network latency depends on the region. The target adds log-normal noise, a few
    spikes (x2 to x3) and, for the concept-drift batch, a slow dependency from
    ``concept_change_at`` on.
    """
    n = sc.n_rows
    region_idx = rng.choice(len(REGIONS), size=n, p=np.array(sc.region_probs))

    load = np.exp(rng.normal(np.log(USERS_MEDIAN * sc.users_factor), 0.45, n))
    users = rng.poisson(load)

    cpu = 8.0 + 92.0 * (1.0 - np.exp(-users / 300.0)) + sc.cpu_extra + rng.normal(0, 7, n)
    cpu = np.clip(cpu, 0.5, 100.0)
    mem = np.clip(35.0 + 0.04 * users + 0.15 * cpu + rng.normal(0, 8, n), 5.0, 100.0)
    disk = np.exp(rng.normal(np.log(20.0), 0.6, n)) * (1.0 + users / 500.0)
    base_latency = np.array(REGION_LATENCY_MS)[region_idx]
    latency = base_latency * rng.gamma(6.0, 1.0 / 6.0, n) + rng.exponential(2.0, n)

    # Round the inputs first so the target is computed from exactly the values written.
    cpu = np.round(cpu, DECIMALS["cpu_usage"])
    mem = np.round(mem, DECIMALS["memory_usage"])
    disk = np.round(disk, DECIMALS["disk_io"])
    latency = np.maximum(np.round(latency, DECIMALS["network_latency"]), 0.01)

    factor = np.array(REGION_FACTOR)[region_idx]
    rt = response_time(cpu, mem, disk, latency, users, factor)
    rt = rt * np.exp(rng.normal(0.0, NOISE_SIGMA, n))
    spikes = rng.random(n) < SPIKE_RATE
    rt = np.where(spikes, rt * rng.uniform(*SPIKE_FACTOR, n), rt)
    if sc.concept_change_at is not None:
        after = np.arange(n) >= sc.concept_change_at
        slow = rt * SLOW_DEPENDENCY_FACTOR + SLOW_DEPENDENCY_MS
        rt = np.where(after, slow, rt)

    stamps = pd.date_range(START + FREQ * sc.start_index, periods=n, freq=FREQ)
    return pd.DataFrame(
        {
            "timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cpu_usage": cpu,
            "memory_usage": mem,
            "disk_io": disk,
            "network_latency": latency,
            "concurrent_users": users.astype(np.int64),
            "region": np.array(REGIONS)[region_idx],
            "response_time_ms": rt,
        },
        columns=COLUMNS,
    )


def to_csv_text(df: pd.DataFrame) -> str:
    """Format floats with fixed decimals and return the CSV text."""
    out = df.copy()
    for col, dec in DECIMALS.items():
        out[col] = [f"{v:.{dec}f}" for v in out[col].to_numpy(dtype=float)]
    return out.to_csv(index=False, lineterminator="\n")


def write_all(out_dir: pathlib.Path, seed: int = SEED) -> list[pathlib.Path]:
    """Write every dataset file into ``out_dir`` and return their paths.

    Another ``seed`` gives a variant: other rows, the same ground truth (the same simulator,
    concept change at the same row, the same drift in the same batch), which the grader uses
    as hidden inputs so that values copied from a run do not match."""
    out_dir = pathlib.Path(out_dir)
    streams = np.random.SeedSequence(seed).spawn(len(SCENARIOS))
    paths: list[pathlib.Path] = []
    for sc, ss in zip(SCENARIOS, streams, strict=True):
        df = simulate(np.random.default_rng(ss), sc)
        path = out_dir / sc.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(to_csv_text(df).encode("utf-8"))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parent,
        help="output directory (default: the folder of this script)",
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED}: the course data)")
    args = parser.parse_args(argv)
    for path in write_all(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
