"""Retention rules and immutable tags (issue 16), as a pure domain: no database, HTTP or storage.

policy.py parses and validates a tenant's retention policy, immutable.py its immutable-tag rules,
selectors.py the globs, RE2 regexes and semver ranges both use, and engine.py turns a policy and
the tenant's tag records into a plan of what is kept, protected and deleted, and why.
docs/retention.md describes the documents and the semantics.
"""

from .engine import (DELETE, KEEP, PROTECT, Plan, TagRecord, TagVerdict, UntaggedManifest, UntaggedVerdict,
                     evaluate)
from .errors import RetentionError
from .immutable import ImmutableRule, parse_immutable_rules, protects, refusal
from .policy import EMPTY_POLICY, Policy, Rule, RuleSet, parse_policy

__all__ = ["DELETE", "EMPTY_POLICY", "KEEP", "PROTECT", "ImmutableRule", "Plan", "Policy", "RetentionError",
           "Rule", "RuleSet", "TagRecord", "TagVerdict", "UntaggedManifest", "UntaggedVerdict", "evaluate",
           "parse_immutable_rules", "parse_policy", "protects", "refusal"]
