"""The CLI's exit statuses: 2 with a message for what a user can fix, 1 with a traceback for a
bug."""

import subprocess
import sys

import pytest

from monitor.service import cli


def test_user_errors_exit_2_with_their_message(tmp_path, capsys):
    assert cli.main(["config", "check", str(tmp_path / "missing.yaml")]) == 2
    assert "invalid configuration: config file: cannot read" in capsys.readouterr().err
    assert cli.main(["check", "--reference", str(tmp_path / "none.npz"), "-q", str(tmp_path)]) == 2
    assert "not a driftmon reference" in capsys.readouterr().err  # an InputError
    assert (
        cli.main(
            [
                "reference",
                "build",
                "--from-dir",
                str(tmp_path / "nowhere"),
                "--out",
                str(tmp_path / "r.npz"),
                "-q",
            ]
        )
        == 2
    )
    assert "not a directory" in capsys.readouterr().err


def test_a_bug_is_not_reported_as_a_user_error(monkeypatch):
    def bug(args):
        raise ValueError(
            "tuple.index(x): x not in tuple"
        )  # what a bug looks like, not a user's mistake

    monkeypatch.setattr(cli, "_config_check", bug)
    with pytest.raises(ValueError, match="tuple.index"):
        cli.main(["config", "check", "any.yaml"])


def test_the_console_script_prints_a_bugs_traceback_and_exits_1(tmp_path):
    code = (
        "import sys; from monitor.service import cli\n"
        "def bug(args): raise KeyError('pc00')\n"
        "cli._config_check = bug\n"
        "sys.exit(cli.main(['config', 'check', 'any.yaml']))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "Traceback (most recent call last)" in res.stderr and "KeyError: 'pc00'" in res.stderr
