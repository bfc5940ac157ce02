"""Rules and subjects built in one line, for the rule engine's and the messages' tests."""

from __future__ import annotations

import random
from dataclasses import fields
from decimal import Decimal
from typing import Any

import yaml

from alertd.config import RuleConfig
from alertd.daemon.evaluation import _rule
from alertd.rules.model import Condition, Rule, Scope, Severity, Subject

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
    its condition's levels and parameters (``above=``, ``clear_below=``, ``window_s=``, ...)
    and its own timings (``repeat_s=``, ``for_s=``, ...)."""
    levels = {k: options.pop(k) for k in list(options) if k in CONDITION_OPTIONS}
    return Rule(name or metric, Condition(metric, scope, **levels), severity, **options)


# what a rule's ``options`` give its condition (the rest are the rule's own)
CONDITION_OPTIONS = {f.name for f in fields(Condition) if f.init} - {"metric", "scope"}


# the shipped ratio warning's levels: above 50%, clear below 45%
RATIO_WARNING = rule("worst_ratio", name="ratio-warning", above=D("0.5"), clear_below=D("0.45"))


def configured(text: str) -> list[Rule]:
    """Rules as a user writes them under the config's ``rules:`` (YAML), validated and built
    as ``alertd run`` builds them."""
    return [_rule(RuleConfig.model_validate(item)) for item in yaml.safe_load(text)]


# a random rule's timings (config keys) and the values each is drawn from
TIMINGS = (
    ("for", (1, 5, 30, 120)),
    ("keep_firing_for", (0.5, 3, 10, 60)),
    ("repeat", (0, 20, 90, 600)),
)


def random_timings(
    rng: random.Random, chances: tuple[float, float, float] = (0.4, 0.4, 0.4)
) -> dict[str, float]:
    """A random rule's ``for``, ``keep_firing_for`` and ``repeat`` (config keys), each present
    with its chance in ``chances`` (in that order), drawn from ``TIMINGS``."""
    out = {}
    for (key, values), chance in zip(TIMINGS, chances, strict=True):
        if rng.random() < chance:
            out[key] = float(rng.choice(values))
    return out
