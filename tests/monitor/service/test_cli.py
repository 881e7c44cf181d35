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


# --- driftmon training -------------------------------------------------------------------------


def _images(directory, n: int = 12) -> list:
    """``n`` small distinct JPEG frames (gradients with noise) in ``directory``."""
    import cv2
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        ramp = np.linspace(0, 200, 96, dtype=np.float32)[None, :, None] * (0.5 + i / n)
        img = np.clip(ramp + rng.normal(0, 8, (64, 96, 3)), 0, 255).astype(np.uint8)
        path = directory / f"frame_{i:03d}.jpg"
        assert cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def _training_config(tmp_path, embeddings: bool = True) -> str:
    path = tmp_path / "driftmon.yaml"
    off = "" if embeddings else "embedding:\n  enabled: false\n"
    path.write_text(f"training:\n  path: {tmp_path / 'training'}\n{off}")
    return str(path)


def test_training_build_from_a_directory_stores_versions_and_says_the_radius(tmp_path, capsys):
    import json

    from monitor.config import load_config
    from monitor.loop.coverage import load_training

    _images(tmp_path / "train")
    cfg = _training_config(tmp_path)
    args = ["training", "build", "--from-dir", str(tmp_path / "train"), "-c", cfg, "-q"]
    assert cli.main([*args, "--min-frames", "5"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["version"] == 1 and first["frames"] == 12 and first["coverage_radius"] > 0
    assert first["path"].endswith("v0001.npz") and first["coverage_quantile"] == 0.95
    assert cli.main([*args, "--min-frames", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 2
    ref = load_training(load_config(cfg))
    assert ref is not None and ref.version == 2 and ref.stream is None
    assert ref.extra["role"] == "training" and ref.extra["previous_versions"] == [1]
    assert ref.embeddings is not None and ref.embeddings.shape == (12, 128)
    assert cli.main(["training", "show", "-c", cfg]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["version"] for s in shown] == [1, 2] and shown[0]["age_days"] >= 0
    assert cli.main(args) == 2  # 12 frames, fewer than the default --min-frames 50
    assert "need --min-frames" in capsys.readouterr().err


def test_training_build_from_a_manifest_reads_the_listed_images_relative_to_it(tmp_path, capsys):
    import json

    paths = _images(tmp_path / "data" / "images")
    manifest = tmp_path / "data" / "train.txt"
    listed = [f"images/{p.name}" for p in paths[:8]] + ["# a comment", "", str(paths[8])]
    (tmp_path / "data" / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    manifest.write_text("\n".join([*listed, "images/broken.jpg"]) + "\n")
    cfg = _training_config(tmp_path)
    args = ["training", "build", "--manifest", str(manifest), "-c", cfg, "-q", "--min-frames", "5"]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == 9 and out["source"].startswith("manifest:")  # 8 relative, 1 absolute
    assert sum(out["decode_errors"].values()) == 1  # the broken one
    manifest.write_text("images/frame_000.jpg\nimages/missing.jpg\n")
    assert cli.main(args) == 2
    assert "1 of 2 listed files do not exist" in capsys.readouterr().err


def test_training_build_refuses_without_training_path_or_embeddings(tmp_path, capsys):
    _images(tmp_path / "train")
    source = ["--from-dir", str(tmp_path / "train"), "-q", "--min-frames", "5"]
    assert cli.main(["training", "build", *source]) == 2
    assert "training.path" in capsys.readouterr().err
    cfg = _training_config(tmp_path, embeddings=False)
    assert cli.main(["training", "build", *source, "-c", cfg]) == 2
    assert "embedding.enabled" in capsys.readouterr().err
    assert not (tmp_path / "training").exists()
    assert cli.main(["training", "show", "-c", _training_config(tmp_path)]) == 2
    assert "no training reference" in capsys.readouterr().err
