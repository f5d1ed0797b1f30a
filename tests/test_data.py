"""Tests for the course dataset made by data/make_data.py (see data/README.md)."""

import importlib.util
import pathlib
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
MAIN = DATA / "devops_metrics.csv"
BATCHES = {
    name: DATA / "production" / f"batch_{name}.csv"
    for name in ("no_drift", "feature_drift", "concept_drift")
}
ALL_FILES = [MAIN, *BATCHES.values()]

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
FEATURES = ["cpu_usage", "memory_usage", "disk_io", "network_latency", "concurrent_users"]
TARGET = "response_time_ms"
REGIONS = {"eu-west", "us-east", "ap-south"}
CADENCE = pd.Timedelta(minutes=5)
CHANGE_POINT = 400  # first slow row of batch_concept_drift.csv
ALPHA = 0.01


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_data", DATA / "make_data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path: pathlib.Path) -> pd.DataFrame:
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def main_df() -> pd.DataFrame:
    return read(MAIN)


@pytest.fixture(scope="module")
def batches() -> dict[str, pd.DataFrame]:
    return {name: read(path) for name, path in BATCHES.items()}


@pytest.fixture(scope="module")
def split(main_df: pd.DataFrame) -> list[pd.DataFrame]:
    return train_test_split(main_df[FEATURES], main_df[TARGET], test_size=0.25, random_state=42)


@pytest.fixture(scope="module")
def forest(split: list[pd.DataFrame]) -> RandomForestRegressor:
    x_train, _, y_train, _ = split
    model = RandomForestRegressor(n_estimators=100, max_depth=12, random_state=42, n_jobs=-1)
    return model.fit(x_train, y_train)


# (a) reproducibility ------------------------------------------------------------------------


def test_regenerated_files_are_byte_identical(tmp_path: pathlib.Path) -> None:
    written = load_generator().write_all(tmp_path)
    rel = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    committed = sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*.csv"))
    assert rel == committed
    assert rel == sorted(p.relative_to(DATA).as_posix() for p in ALL_FILES)
    for name in rel:
        fresh, old = (tmp_path / name).read_bytes(), (DATA / name).read_bytes()
        assert fresh == old, f"{name} differs from a fresh run of data/make_data.py"
        assert b"\r" not in old


# (b) schema -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_schema(path: pathlib.Path) -> None:
    df = read(path)
    assert list(df.columns) == COLUMNS
    assert len(df) == (4000 if path == MAIN else 1000)
    assert not df.isna().any().any()

    for col in [*FEATURES[:-1], TARGET]:
        assert df[col].dtype == np.float64, col
    assert df["concurrent_users"].dtype == np.int64
    assert pd.api.types.is_string_dtype(df["region"])
    assert set(df["region"]) == REGIONS

    assert df["timestamp"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    ts = pd.to_datetime(df["timestamp"], utc=True)
    assert (ts.diff().iloc[1:] == CADENCE).all()

    assert df["cpu_usage"].between(0, 100).all()
    assert df["memory_usage"].between(0, 100).all()
    assert (df["disk_io"] >= 0).all()
    assert (df["network_latency"] > 0).all()
    assert (df["concurrent_users"] >= 0).all()
    assert (df[TARGET] > 0).all()


def test_timestamps_continue_across_files() -> None:
    frames = [read(p) for p in ALL_FILES]
    first = pd.to_datetime(frames[0]["timestamp"], utc=True).iloc[0]
    assert first == pd.Timestamp("2026-01-05T00:00:00Z")
    ts = pd.to_datetime(pd.concat([f["timestamp"] for f in frames]), utc=True)
    assert (ts.diff().iloc[1:] == CADENCE).all()


def test_target_looks_like_response_times(main_df: pd.DataFrame) -> None:
    rt = main_df[TARGET]
    assert 100 <= rt.median() <= 300
    assert 1000 <= rt.max() <= 5000  # long right tail up to a few seconds
    assert rt.mean() > rt.median()  # right-skewed
    assert main_df["concurrent_users"].corr(main_df["cpu_usage"]) > 0.5
    shares = main_df["region"].value_counts(normalize=True)
    assert shares.min() > 0.05
    assert np.diff(np.sort(shares.to_numpy())).min() > 0.05  # clearly unequal frequencies


# (c) the main dataset rewards a non-linear model ---------------------------------------


def test_forest_beats_linear_regression(
    split: list[pd.DataFrame], forest: RandomForestRegressor
) -> None:
    x_train, x_test, y_train, y_test = split
    r2_forest = r2_score(y_test, forest.predict(x_test))
    r2_linear = r2_score(y_test, LinearRegression().fit(x_train, y_train).predict(x_test))
    assert r2_forest >= 0.80
    assert r2_forest - r2_linear >= 0.10
    assert 0.3 <= r2_linear <= 0.75


def test_a_few_spikes(split: list[pd.DataFrame], forest: RandomForestRegressor) -> None:
    # About 0.5% of rows are slowed down 2-3x; the log-normal noise alone never gets near 1.8x.
    _, x_test, _, y_test = split
    ratio = y_test.to_numpy() / forest.predict(x_test)
    assert 0.002 <= (ratio > 1.8).mean() <= 0.015


# (d) the production batches drift as designed ------------------------------------------


def ks_pvalues(reference: pd.DataFrame, batch: pd.DataFrame) -> dict[str, float]:
    return {c: stats.ks_2samp(reference[c], batch[c]).pvalue for c in FEATURES}


def region_pvalue(reference: pd.DataFrame, batch: pd.DataFrame) -> float:
    table = pd.concat(
        [reference["region"].value_counts(), batch["region"].value_counts()], axis=1
    ).fillna(0)
    return stats.chi2_contingency(table.to_numpy()).pvalue


@pytest.mark.parametrize("name", ["no_drift", "concept_drift"])
def test_inputs_do_not_drift(
    main_df: pd.DataFrame, batches: dict[str, pd.DataFrame], name: str
) -> None:
    pvalues = ks_pvalues(main_df, batches[name])
    assert all(p >= ALPHA for p in pvalues.values()), pvalues
    assert region_pvalue(main_df, batches[name]) >= ALPHA


def test_feature_drift_batch_drifts(
    main_df: pd.DataFrame, batches: dict[str, pd.DataFrame]
) -> None:
    batch = batches["feature_drift"]
    pvalues = ks_pvalues(main_df, batch)
    assert pvalues["concurrent_users"] < ALPHA
    assert pvalues["cpu_usage"] < ALPHA
    assert batch["concurrent_users"].median() > 1.3 * main_df["concurrent_users"].median()
    assert batch["cpu_usage"].mean() > main_df["cpu_usage"].mean() + 5

    assert region_pvalue(main_df, batch) < ALPHA
    before = main_df["region"].value_counts(normalize=True)
    after = batch["region"].value_counts(normalize=True)
    assert after["ap-south"] > before["ap-south"] + 0.15
    assert after["eu-west"] < before["eu-west"] - 0.15


def residuals(model: RandomForestRegressor, df: pd.DataFrame) -> np.ndarray:
    return df[TARGET].to_numpy() - model.predict(df[FEATURES])


def test_feature_drift_keeps_the_relationship(
    forest: RandomForestRegressor, batches: dict[str, pd.DataFrame]
) -> None:
    # A forest cannot extrapolate to the new high-load rows, so use the median residual.
    assert abs(np.median(residuals(forest, batches["feature_drift"]))) < 20
    assert abs(np.median(residuals(forest, batches["no_drift"]))) < 20


def test_concept_drift_changes_the_relationship(
    forest: RandomForestRegressor, batches: dict[str, pd.DataFrame]
) -> None:
    res = residuals(forest, batches["concept_drift"])
    before, after = res[:CHANGE_POINT], res[CHANGE_POINT:]
    assert abs(before.mean()) < 20
    assert after.mean() > 100
    # A CUSUM of the residuals peaks at the change point.
    cusum = np.cumsum(res - res.mean())
    assert abs(int(np.argmax(np.abs(cusum))) - CHANGE_POINT) <= 25

    # The no-drift batch has no such jump.
    calm = residuals(forest, batches["no_drift"])
    assert abs(calm[CHANGE_POINT:].mean() - calm[:CHANGE_POINT].mean()) < 20
