"""Lab 07a references: DVC's md5 of the first data version and of the pipeline's split, and the
pipeline's MAE for both values of ``train.n_estimators``, computed on the grader's data with
the recipe of the lab's given scripts (``lab07_repo.SCRIPTS``: prepare, train, evaluate)."""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab07_repo, lab07a, labkit
from autograder.labspec import LabSpec


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 (DVC's content hash)


@functools.lru_cache(maxsize=8)
def split(data_path: str, version: str, v1_rows: int, test_size: float, seed: int) -> tuple[bytes, bytes]:
    """The bytes prepare.py writes: data/train.csv and data/test.csv."""
    import pandas as pd

    data = pd.read_csv(io.BytesIO(lab07_repo.version_bytes(data_path, version, v1_rows)))
    test = data.sample(frac=test_size, random_state=seed)
    train = data.drop(test.index)
    return train.to_csv(index=False).encode(), test.to_csv(index=False).encode()


@functools.lru_cache(maxsize=8)
def mae(data_path: str, version: str, v1_rows: int, test_size: float, seed: int, n_estimators: int,
        max_depth: int) -> float:
    """What train.py then evaluate.py write to metrics.json."""
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor

    train_bytes, test_bytes = split(data_path, version, v1_rows, test_size, seed)
    train, test = pd.read_csv(io.BytesIO(train_bytes)), pd.read_csv(io.BytesIO(test_bytes))
    model = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=1)
    model.fit(train[labkit.FEATURES], train[labkit.TARGET])
    return float((test[labkit.TARGET] - model.predict(test[labkit.FEATURES])).abs().mean())


def versions(data_path: Path, params: Mapping[str, Any], runs: list[tuple[str, int]]) -> dict[str, Any]:
    """md5 and split of each data version named in ``runs`` and the MAE of each (version, trees)."""
    v1_rows, test_size, seed = int(params["V1_ROWS"]), float(params["TEST_SIZE"]), int(params["SEED"])
    depth, path = int(params["MAX_DEPTH"]), str(data_path)
    values: dict[str, Any] = {"md5": {}, "split": {}, "mae": {}}
    for version in dict.fromkeys(v for v, _ in runs):
        values["md5"][version] = md5(lab07_repo.version_bytes(path, version, v1_rows))
        train, test = split(path, version, v1_rows, test_size, seed)
        values["split"][version] = {"data/train.csv": md5(train), "data/test.csv": md5(test)}
    for version, trees in runs:
        values["mae"][f"{version}_{trees}"] = mae(path, version, v1_rows, test_size, seed, trees, depth)
    return values


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    runs = [("v1", int(params["N_ESTIMATORS"])), ("v1", int(params["TUNED_N_ESTIMATORS"]))]
    return {**lab07a.expected_from_params(params), **versions(data_path, params, runs)}


SPEC = LabSpec(lab=lab07a, expected=expected)
