"""``alertd schema``: the config file's JSON Schema, for editors."""

from __future__ import annotations

import argparse
import json

from alertd.cli.common import EXIT_OK, Subparsers


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    return sub.add_parser("schema", help="print the config file's JSON Schema (for editors)")


def run(args: argparse.Namespace) -> int:
    from alertd.config import Config

    print(json.dumps(Config.model_json_schema(by_alias=True), indent=2))
    return EXIT_OK
