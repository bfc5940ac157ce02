"""``alertd schema``: print the config file's (or the snapshot's) JSON Schema (for editors).

Print the JSON Schema of config.yaml, for editors that complete and check YAML; with
--snapshot, the JSON Schema of the snapshot file that `alertd calc` reads (schema 2).
"""

from __future__ import annotations

import argparse
import json

from alertd.cli.common import EXIT_OK

NEEDS_CONFIG = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="the snapshot format's schema (alertd calc's input) instead of config.yaml's",
    )


def run(args: argparse.Namespace) -> int:
    if args.snapshot:
        from alertd.snapshot.format import SnapshotInV2

        schema = SnapshotInV2.model_json_schema(by_alias=True)
    else:
        from alertd.config import Config

        schema = Config.model_json_schema(by_alias=True)
    print(json.dumps(schema, indent=2))
    return EXIT_OK
