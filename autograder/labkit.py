"""Compatibility name for :mod:`autograder.kit.labkit` (the grader's own modules and the
labs not yet moved to the kit import it from here)."""

from autograder.kit.labkit import *  # noqa: F403
from autograder.kit.labkit import (  # noqa: F401
    FEATURES,
    MAIN_DATASET,
    STORE_DIR,
    TARGET,
    artifact_root_for,
    connect,
    course_store_uri,
    data_path,
    quiet_stack_warnings,
    run_url,
    sqlite_path,
    sqlite_uri,
)
