"""Rules and subjects built in one line, for the rule engine's and the messages' tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import yaml

from alertd.config import RuleConfig
from alertd.daemon.evaluation import _rule
from alertd.rules.model import Rule, Scope, Severity, Subject

D = Decimal
MAIN = Subject("main", "binanceusdm")
BTC_LONG = Subject("main", "binanceusdm", "BTC/USDT:USDT", "long")


def rule(
    metric: str,
    scope: Scope = Scope.ACCOUNT,
    severity: Severity = Severity.WARNING,
    name: str | None = None,
    **options: Any,
) -> Rule:
    """A rule on ``metric``, named after it unless ``name`` says otherwise; ``options`` are
    its levels and timings (``above=``, ``clear_below=``, ``repeat_s=``, ...)."""
    return Rule(name or metric, metric, scope, severity, **options)


# the shipped ratio warning's levels: above 50%, clear below 45%
RATIO_WARNING = rule("worst_ratio", name="ratio-warning", above=D("0.5"), clear_below=D("0.45"))


def configured(text: str) -> list[Rule]:
    """Rules as a user writes them under the config's ``rules:`` (YAML), validated and built
    as ``alertd run`` builds them."""
    return [_rule(RuleConfig.model_validate(item)) for item in yaml.safe_load(text)]
