"""``alertd ...`` run in-process, its output through strict UTF-8 streams like a terminal's."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from alertd.cli.main import main


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def problems(self) -> list[str]:
        return self.err.splitlines()


def alertd(*argv: str) -> Run:
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8")
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace")
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
        out.flush()
        err.flush()
    return Run(code, out_bytes.getvalue().decode(), err_bytes.getvalue().decode())
