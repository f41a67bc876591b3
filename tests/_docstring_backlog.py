"""Public names that still lack a numpydoc ``Examples`` section.

The list may only shrink: ``tests/test_public_api.py::test_public_names_have_examples`` fails on a
public name without examples that is not listed, and on a listed name that has examples now.
"""

WITHOUT_EXAMPLES: set[str] = set()
