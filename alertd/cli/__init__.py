"""The command line: ``alertd <command>``; :func:`main` maps exceptions to exit codes."""

from alertd.cli.main import main, run

__all__ = ["main", "run"]
