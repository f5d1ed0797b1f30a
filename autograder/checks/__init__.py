"""Per-lab checks: plain functions over evidence, shared by notebooks and the grader."""
