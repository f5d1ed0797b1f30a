"""The student half of the autograder: what the lab notebooks import and what ships in the
student bundle. A sandboxed submission sees this package and nothing else of the grader.

Nothing here computes a TODO's answer: the kit gathers evidence (reads the MLflow store,
asks a logged model for predictions), judges it against expected values handed to it as
plain numbers, and prints a self-check. The references that make those numbers live in
``autograder.references``, which never ships and which no sandbox can see.
"""
