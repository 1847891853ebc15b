"""`medveil profile` prints the rule table in force, and the HIPAA view."""

from __future__ import annotations

import json

from medveil.cli.main import main


def test_profile_lists_rules_and_sources(capsys, tmp_path) -> None:
    assert main(["profile"]) == 0
    out = capsys.readouterr().out
    assert "© NEMA" in out
    assert "(0010,0010)    PatientName" in out and "pseudonym" in out
    assert "(0008,0020)    StudyDate" in out and "retain_longitudinal_modified_dates" in out
    policy = tmp_path / "p.toml"
    policy.write_text('[profile]\noptions = ["retain_uids"]\nunknown_elements = "remove"\n')
    assert main(["profile", "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "allow-list" in out
    assert (
        "(0020,000D)    StudyInstanceUID                              K          retain_uids" in out
    )


def test_profile_hipaa_shows_open_categories(capsys, tmp_path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[profile]\noptions = ["retain_device_identity"]\n')
    assert main(["profile", "--policy", str(policy), "--hipaa"]) == 0
    out = capsys.readouterr().out
    assert "M. Device identifiers" in out and "OPEN: retain_device_identity" in out
    # The default policy pseudonymises PatientName: a pseudonym is not removal.
    assert "A. Names\n    OPEN: PatientName is pseudonymised, not removed" in out


def test_profile_bad_policy_exit_2(capsys, tmp_path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[elements]\nNoSuchKeyword = 'X'\n")
    assert main(["profile", "--policy", str(policy)]) == 2
    assert "p.toml:2:" in capsys.readouterr().err  # errors go to stderr, one prefix style


def test_profile_shows_the_safety_net_and_why(capsys, tmp_path) -> None:
    assert main(["profile"]) == 0
    out = capsys.readouterr().out
    assert "# safety net: " in out and "# overlay groups (60xx): removed whole" in out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("(")}
    assert "X/Z        safety-net: person name" in lines["SecondaryReviewerName"]
    assert "X/Z        safety-net: free text" in lines["DocumentTitle"]
    assert "U          safety-net: UID" in lines["SOPInstanceUIDOfConcatenationSource"]
    assert "K          safety-net: keep-list: device maker" in lines["Manufacturer"]
    assert "C          safety-net: date" in lines["SecondaryReviewDate"]
    assert main(["profile", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    net = [r for r in data["rules"] if r["decided_by"] == "safety-net"]
    assert len(net) == data["safety_net_rules"] > 400 and all(r["why"] for r in net)
    policy = tmp_path / "p.toml"
    policy.write_text('[profile]\nunknown_elements = "remove"\n[elements]\n"(60xx,3000)" = "K"\n')
    assert main(["profile", "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "# safety net" not in out and "kept whole, text cleaned" in out


def test_profile_hipaa_in_allow_list_mode_says_removed(capsys, tmp_path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[profile]\nunknown_elements = "remove"\n')
    assert main(["profile", "--policy", str(policy), "--hipaa"]) == 0
    out = capsys.readouterr().out
    assert "RetrieveURL: X (no rule: removed in allow-list mode)" in out
    assert main(["profile", "--hipaa"]) == 0
    assert "RetrieveURL: X/Z (safety-net)" in capsys.readouterr().out
