"""mrlib — music metric learning, step by step.

A thin helper package behind the notebooks in ``notebooks/``: one module per concept,
each naming the lesson it serves; functions first. See README.md and CONTRIBUTING.md.
"""
__version__ = "0.1.0"
