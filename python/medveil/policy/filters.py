"""[filter] rules on a header: which instances a policy keeps out of processing.

One evaluator for the engine (``clean_instance`` asks it before any cleaning) and for the
HIPAA view (``policy.hipaa`` runs a policy's filters on sample headers), so what
``medveil profile --hipaa`` claims is what a run does.
"""

from __future__ import annotations

import re

from pydicom.dataset import Dataset

from medveil.dicom.peek import peek_str
from medveil.policy.schema import FilterRule, FilterTest, filter_field_tag


def _test_holds(ds: Dataset, test: FilterTest) -> bool:
    """One filter test on the top-level attributes of ``ds`` (deid's operators).

    contains / notcontains search the value for a regular expression, ignoring case;
    matches wants the whole value to match; equals compares the whole value or any one of
    its values (ImageType 'ORIGINAL\\PRIMARY' equals 'PRIMARY').
    """
    tag = filter_field_tag(test.field)
    present = tag is not None and tag in ds
    op = test.op
    if op == "missing":
        return not present
    if op == "present":
        return present
    text = peek_str(ds, tag) if present and tag is not None else ""
    if op == "empty":
        return present and not text.strip("\x00 \\")
    if not present:
        return op in ("notcontains", "notequals")
    values = [text.strip("\x00 "), *(v.strip("\x00 ") for v in text.split("\\"))]
    if op in ("equals", "notequals"):
        return (test.value in values) == (op == "equals")
    if op == "matches":
        return re.fullmatch(test.value, values[0]) is not None
    found = re.search(test.value, values[0], re.IGNORECASE) is not None
    return found == (op == "contains")


def _rule_holds(ds: Dataset, rule: FilterRule) -> bool:
    """A filter rule's tests, left to right, each joined to the result so far by and/or."""
    held = _test_holds(ds, rule.tests[0])
    for test in rule.tests[1:]:
        now = _test_holds(ds, test)
        held = (held or now) if test.join == "or" else (held and now)
    return held


def filter_verdict(ds: Dataset, filters: tuple[FilterRule, ...]) -> str | None:
    """The name of the [filter] rule that excludes ``ds`` ('exclude[0]', 'include'), or None.

    With include rules, an instance none of them matches is excluded ('include'); an
    instance an exclude rule matches is excluded by the first such rule. Graylist rules
    select nothing here (they are a recipe's note for pixel review).
    """
    includes = [r for r in filters if r.kind == "include"]
    if includes and not any(_rule_holds(ds, r) for r in includes):
        return "include"
    for rule in filters:
        if rule.kind == "exclude" and _rule_holds(ds, rule):
            return rule.name
    return None
