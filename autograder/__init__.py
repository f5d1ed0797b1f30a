"""The course's grading engine: checks, the notebook generator and the grader.

Run ``python -m autograder --help``.
"""

__version__ = "0.1.0"
