"""Shipped data sets: the synthetic MARVEL survey and the real-data (GSS) example.

Public names of the modules below are available here (loaded on first use); see ARCHITECTURE.md.
"""

from veerkracht_bayes._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, __file__)
