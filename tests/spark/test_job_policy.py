"""Each Spark job's executors apply exactly that job's policy and secret (no Spark needed).

A policy caches its compilation on the object, and ``dataclasses.replace`` copies that
cache: a job whose policy was derived from an already compiled one used to ship, and
apply, the compilation of the policy it came from (UIDs remapped despite ``retain_uids``,
a ``..`` UID then written instead of quarantined). Python workers also outlive tasks and
jobs, so any engine they keep must be keyed on the policy and secret it was built from.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from pathlib import Path

import pydicom
import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.policy.schema import ElementOverride, Policy
from medveil.policy.standard import Option
from medveil.run import spark as mspark
from medveil.run.demo import demo_rule_file, write_demo_archive

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))


@pytest.fixture(scope="module")
def ct_file(tmp_path_factory) -> Path:
    """One CT file of the demo archive (names, UIDs, an institution)."""
    files = write_demo_archive(tmp_path_factory.mktemp("demo"))
    return next(p for p in files if p.parent.name == "ct")


def _compiled(policy: Policy) -> Policy:
    """policy, compiled in this process (as a preview or an in-process run leaves it)."""
    Deidentifier(policy, SECRET)
    assert policy._compiled is not None
    return policy


def _clean(engine: Deidentifier, path: Path) -> pydicom.Dataset:
    result = clean_instance(engine, path.read_bytes(), path.name)
    assert result.status == "written", result.reason
    return pydicom.dcmread(io.BytesIO(b"".join(bytes(p) for p in result.parts)))


def test_stale_compilation_is_no_trap(ct_file) -> None:
    """replace() of a compiled policy, and what a job ships, compile their own fields."""
    base = _compiled(Policy(pixel_rule_files=(str(demo_rule_file()),)))
    derived = dataclasses.replace(base, options=(*base.options, Option.RETAIN_UIDS))
    assert derived._compiled is None  # replace() used to carry base's compilation along
    original = pydicom.dcmread(ct_file).StudyInstanceUID
    assert _clean(Deidentifier(derived, SECRET), ct_file).StudyInstanceUID == original
    assert _clean(Deidentifier(base, SECRET), ct_file).StudyInstanceUID != original
    # What the job hands to its executors: compiled from its own fields.
    shipped = pickle.loads(pickle.dumps(mspark.fresh_policy(derived)))
    assert shipped._compiled is None
    assert _clean(Deidentifier(shipped, SECRET), ct_file).StudyInstanceUID == original


def test_engine_for_applies_each_policy_in_both_directions(ct_file) -> None:
    """permissive after strict and strict after permissive, in one process, from policies
    derived from compiled ones: each gets its own engine and its own outputs."""
    mspark._ENGINES.clear()
    original = pydicom.dcmread(ct_file)
    strict = _compiled(Policy(pixel_rule_files=(str(demo_rule_file()),)))
    permissive = dataclasses.replace(
        strict,
        options=(*strict.options, Option.RETAIN_UIDS),
        overrides=(ElementOverride("InstitutionName", "K"),),
    )
    for _ in range(2):
        for policy in (_compiled(permissive), strict):
            ds = _clean(mspark.engine_for(pickle.loads(pickle.dumps(policy)), SECRET), ct_file)
            kept = policy is permissive
            assert (ds.StudyInstanceUID == original.StudyInstanceUID) is kept
            assert (ds.SOPInstanceUID == original.SOPInstanceUID) is kept
            assert (ds.get("InstitutionName") == original.InstitutionName) is kept
        # strict derived back from the compiled permissive policy: strict again.
        strict = dataclasses.replace(permissive, options=strict.options, overrides=())
    assert len(mspark._ENGINES) <= mspark._ENGINES_KEPT


def test_engine_key_covers_policy_secret_and_rule_files(tmp_path) -> None:
    """Equal policies (even unequal objects with a stale cache) share an engine; a change of
    an option, an override, the secret or a rule file's bytes never does."""
    mspark._ENGINES.clear()
    rules = tmp_path / "rules.toml"
    rules.write_bytes(Path(demo_rule_file()).read_bytes())
    base = Policy(pixel_rule_files=(str(rules),))
    same = _compiled(Policy(pixel_rule_files=(str(rules),)))
    key = mspark.engine_key(base, SECRET)
    assert mspark.engine_key(same, SECRET) == key
    assert mspark.engine_key(pickle.loads(pickle.dumps(same)), SECRET) == key
    variants = [
        mspark.engine_key(base, OTHER_SECRET),
        mspark.engine_key(dataclasses.replace(same, options=(Option.RETAIN_UIDS,)), SECRET),
        mspark.engine_key(
            dataclasses.replace(same, overrides=(ElementOverride("PatientSex", "X"),)), SECRET
        ),
    ]
    assert len({key, *variants}) == 4
    engine = mspark.engine_for(base, SECRET)
    assert mspark.engine_for(same, SECRET) is engine  # built once per worker process
    assert mspark.engine_for(base, OTHER_SECRET) is not engine
    assert mspark.engine_for(base, OTHER_SECRET).keyed.uid("1.2.3") != engine.keyed.uid("1.2.3")
    # A rule file edited between two jobs: a new engine, never the old rules.
    rules.write_bytes(rules.read_bytes() + b"\n# edited\n")
    assert mspark.engine_key(base, SECRET) != key
    assert mspark.engine_for(base, SECRET) is not engine
    assert repr(SECRET) not in repr(key) and SECRET not in key
