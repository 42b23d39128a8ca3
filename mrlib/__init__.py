"""mrlib — music metric learning, step by step.

A thin helper package behind the notebooks in ``notebooks/``: one module per lesson,
functions first. See README.md and CONTRIBUTING.md.
"""
__version__ = "0.1.0"
