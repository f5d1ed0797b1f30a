"""The trusted half of each lab: how its expected values are computed, on any inputs.

Never shipped to students and never visible inside a sandbox: these functions hold the
answers of the TODOs (a metric's recipe, a statistic's formula). Each lab module exposes
``SPEC``, a :class:`autograder.labspec.LabSpec`.
"""
