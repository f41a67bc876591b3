"""Command-line interface ``veerkracht-bayes``: the top layer, which no library module imports.

Importing this package registers every command on :data:`app`.
"""

from veerkracht_bayes.cli import effects, main, run, sem  # noqa: F401 - registers the commands
from veerkracht_bayes.cli.app import app

__all__ = ["app"]
