from metalearn_edu import config, doctor


def test_report_finds_the_archives_through_the_environment(monkeypatch, tmp_path, capsys):
    for name in doctor.ARCHIVES:
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv(config.OMNIGLOT_ENV, str(tmp_path))
    findings = {f.item: f for f in doctor.report()}
    assert findings["Omniglot archives"].ok
    assert findings["PyTorch"].ok and findings["Python"].ok
    assert doctor.print_report(list(findings.values())) is True
    assert "Omniglot archives" in capsys.readouterr().out


def test_report_says_how_to_fix_missing_data(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(config.OMNIGLOT_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setattr(config, "project_root", lambda: None)
    findings = doctor.report()
    assert doctor.print_report(findings) is False
    out = capsys.readouterr().out
    assert "FIX Omniglot archives" in out and config.OMNIGLOT_ENV in out
