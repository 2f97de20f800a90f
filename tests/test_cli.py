"""The ``xnas`` command line: list, cost, check, and user errors (stderr, exit status 2)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nas.cli import main
from nas.registry import resolve_arch_path


def test_cost_json_x3d_m(capsys: pytest.CaptureFixture) -> None:
    assert main(["cost", "x3d-m", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 3_794_274
    assert out["gflops"] == pytest.approx(4.7325, rel=1e-3)
    assert (out["frames"], out["size"]) == (16, 224)


def test_cost_json_movinet_a0(capsys: pytest.CaptureFixture) -> None:
    assert main(["cost", "movinet-a0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 3_111_799
    assert out["gflops"] == pytest.approx(2.631, rel=1e-3)
    assert (out["frames"], out["size"]) == (50, 172)


def test_cost_with_clip_overrides_and_path(capsys: pytest.CaptureFixture) -> None:
    assert main(["cost", str(resolve_arch_path("x3d-m")), "--frames", "4", "--size", "112", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["frames"], out["size"]) == (4, 112)
    assert main(["cost", "x3d-m"]) == 0
    assert "multiply-adds" in capsys.readouterr().out


def test_list_shows_every_space_and_reference(capsys: pytest.CaptureFixture) -> None:
    from nas import arch_names, space_names

    assert main(["list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in out["spaces"]] == space_names()
    assert [a["name"] for a in out["architectures"]] == arch_names()
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "x3d-m" in text and "movinet-a5" in text and "multiply-adds" in text


def test_malformed_document_gives_one_path_bearing_line(tmp_path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    text = resolve_arch_path("movinet-a0").read_text().replace("{kernel: 5x3x3, expand: 184}", "{kernel: 5x3, expand: 184}", 1)
    bad.write_text(text)
    assert main(["cost", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{bad}: blocks/2/layers/0/kernel: got '5x3'" in err
    assert main(["check", str(bad)]) == 2


@pytest.mark.parametrize("argv, fragment", [
    (["cost", "no-such-arch"], "unknown architecture"),
    (["cost", "missing.yaml"], "a readable UTF-8 file"),
])
def test_user_errors_exit_2_without_traceback(argv, fragment, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_console_script_bad_flag_exits_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "cost", "x3d-m", "--frames", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "positive integer" in proc.stderr and "Traceback" not in proc.stderr


def test_check_reports_what_a_document_is(capsys: pytest.CaptureFixture) -> None:
    from nas.registry import spaces_dir

    assert main(["check", str(spaces_dir() / "movinet.yaml")]) == 0
    assert "space 'movinet'" in capsys.readouterr().out
    assert main(["check", str(resolve_arch_path("x3d-xs"))]) == 0
    assert "architecture 'x3d-xs'" in capsys.readouterr().out
