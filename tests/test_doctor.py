from pathlib import Path

import pytest

from metalearn_edu import config, doctor
from metalearn_edu.data.omniglot import ARCHIVES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"


def test_report_checks_the_basics(capsys):
    findings = {f.item: f for f in doctor.report()}
    assert findings["PyTorch"].ok and findings["Python"].ok and findings["numpy"].ok
    doctor.print_report(list(findings.values()))
    assert "ok  PyTorch" in capsys.readouterr().out


@pytest.mark.skipif(
    not (SHARED / ARCHIVES[0]).is_file(), reason=f"no Omniglot archives in {SHARED}"
)
def test_report_finds_verified_archives_through_the_environment(monkeypatch):
    monkeypatch.setenv(config.OMNIGLOT_ENV, str(SHARED))
    assert doctor.omniglot_status().ok


def test_report_flags_archives_that_fail_verification(monkeypatch, tmp_path, capsys):
    for name in ARCHIVES:
        (tmp_path / name).write_bytes(b"not a zip")
    monkeypatch.setenv(config.OMNIGLOT_ENV, str(tmp_path))
    status = doctor.omniglot_status()
    assert not status.ok and "9 bytes" in status.value
    assert doctor.print_report([status]) is False
    assert "FIX Omniglot archives" in capsys.readouterr().out


def test_report_says_how_to_get_missing_data_without_downloading(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(config.OMNIGLOT_ENV, raising=False)
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "data"))
    status = doctor.omniglot_status()
    assert status.ok and status.value == "not downloaded yet"
    assert not (tmp_path / "data" / "omniglot" / ARCHIVES[0]).exists()
    doctor.print_report([status])
    assert config.OMNIGLOT_ENV in capsys.readouterr().out


def test_triton_is_optional(monkeypatch):
    from metalearn_edu import doctor

    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda m: None if m == "triton" else real(m))
    found = {f.item: f for f in doctor.report()}
    assert found["Triton"].ok and found["Triton"].value == "not installed (optional)"
    assert "Linux" in found["Triton"].advice
