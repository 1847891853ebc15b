"""Policy TOML: validation errors name the line; overrides and generalisations work."""

from __future__ import annotations

import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.generalize import age_band, date_to_year, to_bin
from medveil.errors import PolicyError
from medveil.policy.schema import Policy
from medveil.policy.standard import Option
from pydicom.dataset import Dataset

from .conftest import SECRET


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[profile]\noptions = ["retain_uidz"]\n', 2, "unknown profile option"),
        ("[profile]\nunknown_elements = 'drop'\n", 2, "one of 'keep', 'remove'"),
        ("[elements]\nPatientNam = 'X'\n", 2, "unknown element"),
        ("[elements]\n\nPatientName = 'Q'\n", 3, "unknown action"),
        ("[elements]\nPatientWeight = { action = 'year' }\n", 2, "not allowed for VR DS"),
        ("[elements]\nPatientName = 'U'\n", 2, "needs a UI element"),
        ("[elements]\nPatientWeight = { action = 'bin' }\n", 2, "needs width"),
        ("[dates]\nshift_days = -3\n", 2, "shift_days"),
        ("[pseudonyms]\nlength = 8\n", 2, "16 to 52"),
        ("[bogus]\nx = 1\n", 1, "unknown section"),
        (
            '[profile]\noptions = ["retain_longitudinal_full_dates",\n'
            '  "retain_longitudinal_modified_dates"]\n',
            2,
            "exclude",
        ),
        ("[profile\n", 0, "Expected"),
    ],
)
def test_policy_errors_name_line_and_problem(text, line, message) -> None:
    with pytest.raises(PolicyError, match=message) as err:
        Policy.from_toml(text, source="p.toml")
    if line:
        assert f"p.toml:{line}:" in str(err.value)


def test_policy_file_round_trip(tmp_path) -> None:
    p = tmp_path / "policy.toml"
    p.write_text(
        """
[profile]
options = ["retain_uids", "clean_descriptors"]
combined_codes = "minimal"

[dates]
shift_days = 30

[elements]
PatientWeight = { action = "bin", width = 5 }
PatientAge = { action = "age_band", width = 10 }
StudyDate = { action = "year" }
"(0010,2000)" = { action = "map", table = { "ASTHMA" = "RESPIRATORY" }, default = "OTHER" }
InstitutionName = { value = "RESEARCH SITE" }
"ACME:(0011,xx01)" = "K"
"(60xx,0010)" = "X"
""",
        encoding="utf-8",
    )
    policy = Policy.load(p)
    assert policy.options == (Option.RETAIN_UIDS, Option.CLEAN_DESCRIPTORS)
    ds = Dataset()
    ds.PatientID = "P1"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.PatientWeight = "73.2"
    ds.PatientAge = "047Y"
    ds.StudyDate = "20210317"
    ds.MedicalAlerts = ["ASTHMA", "PENICILLIN"]
    ds.InstitutionName = "Saint Gertrude"
    ds.add_new(0x60000010, "US", 512)
    block = ds.private_block(0x0011, "ACME", create=True)
    block.add_new(0x01, "LO", "kept")
    block.add_new(0x02, "LO", "dropped")
    Deidentifier(policy, SECRET).apply(ds, check=False)
    assert ds.StudyInstanceUID == "1.2.3.4"
    assert float(ds.PatientWeight) == 72.5
    assert ds.PatientAge == "040Y"
    assert ds.StudyDate == "20210101"
    assert list(ds.MedicalAlerts) == ["RESPIRATORY", "OTHER"]
    assert ds.InstitutionName == "RESEARCH SITE"
    assert ds[0x00111001].value == "kept" and 0x00111002 not in ds
    assert 0x60000010 not in ds


def test_generalisation_helpers() -> None:
    assert date_to_year("20210317", "DA") == "20210101"
    assert age_band("093Y") == "090Y" and age_band("047Y") == "045Y" and age_band("006M") == "000Y"
    assert to_bin(73.2, 5) == 72.5


def test_noise_action_is_keyed_per_patient_and_value() -> None:
    policy = Policy.from_toml(
        "[elements]\nPatientWeight = { action = 'noise', epsilon = 1.0, sensitivity = 1.0,"
        " lower = 0, upper = 250 }\n"
    )
    engine = Deidentifier(policy, SECRET)

    def noisy(pid: str, weight: str) -> float:
        ds = Dataset()
        ds.PatientID = pid
        ds.PatientWeight = weight
        engine.apply(ds, check=False)
        return float(ds.PatientWeight)

    # Every image of one patient carries the same noisy weight: averaging removes nothing.
    assert noisy("P1", "70") == noisy("P1", "70")
    draws = {noisy(f"P{i}", "70") for i in range(30)}
    assert len(draws) > 20  # different patients get independent noise
    assert all(-50 < w < 200 for w in draws)
