"""``alertd schema``: print the config file's JSON Schema (for editors).

Print the JSON Schema of config.yaml, for editors that complete and check YAML.
"""

from __future__ import annotations

import argparse
import json

from alertd.cli.common import EXIT_OK

NEEDS_CONFIG = False


def run(args: argparse.Namespace) -> int:
    from alertd.config import Config

    print(json.dumps(Config.model_json_schema(by_alias=True), indent=2))
    return EXIT_OK
