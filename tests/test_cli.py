"""The command line, run as a user runs it: a subprocess of ``python -m analyzer_widgets``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import server_processes

import analyzer_widgets as aw

REPO = str(aw.EXAMPLE_REPOSITORY)


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer_widgets", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.server
def test_profile_one_point(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = cli("profile", "-m", "mlp_numpy", "--model-folder", REPO, "-b", "1", "-c", "1",
               "--window-ms", "300", "--baseline-seconds", "0.5", "-e", str(out))
    assert done.returncode == 0, done.stderr
    # the table: its header and the one row
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "throughput_infer_per_s" in line)
    assert lines[header].split()[:4] == ["model", "batch_size", "concurrency", "status"]
    row = lines[header + 1].split()
    assert row[:3] == ["mlp_numpy", "1", "1"] and row[3] in ("ok", "unstable")
    # the throughput, rounded, with the half-width of its 95% interval
    assert re.fullmatch(r"[\d,]+", row[4]) and float(row[4].replace(",", "")) > 0, row
    assert re.fullmatch(r"±[\d,]+", row[5]), row
    assert "±: half-width of the 95% confidence interval" in done.stdout
    assert "results written to" in done.stdout
    # progress went to stderr, one line per step when it is not a terminal
    assert "ready at 127.0.0.1:" in done.stderr and "baseline recorded" in done.stderr
    assert (out / "metrics-model.csv").is_file() and (out / "metrics-server-only.csv").is_file()
    models, baseline = aw.load_results(out)
    assert len(models) == 1 and models.loc[0, "model"] == "mlp_numpy"
    assert models.loc[0, "throughput_infer_per_s"] > 0
    assert len(baseline) == 1 and baseline.loc[0, "server_version"]
    # a second run into the same folder refuses to overwrite without --overwrite
    again = cli("profile", "-m", "mlp_numpy", "--model-folder", REPO, "-e", str(out))
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_unknown_model_exits_2_and_lists_models(tmp_path: Path) -> None:
    before = server_processes()
    out = tmp_path / "out"
    done = cli("profile", "-m", "nope", "--model-folder", REPO, "-e", str(out))
    assert done.returncode == 2, done.stderr
    assert "'nope'" in done.stderr
    for name in ("mlp_numpy", "mixed_inputs", "sequence_mean", "torch_mlp"):
        assert name in done.stderr
    assert not out.exists()
    assert server_processes() - before == set()


@pytest.mark.parametrize(("flag", "field"), [("-b", "batch_sizes"), ("-c", "concurrency")])
def test_zero_exits_2_and_names_the_field(tmp_path: Path, flag: str, field: str) -> None:
    out = tmp_path / "out"
    done = cli("profile", "-m", "mlp_numpy", "--model-folder", REPO, flag, "0", "-e", str(out))
    assert done.returncode == 2, done.stderr
    assert field in done.stderr and "'0'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_a_flag_read_into_other_units_shows_the_value_as_typed(tmp_path: Path) -> None:
    done = cli("profile", "-m", "mlp_numpy", "--model-folder", REPO, "--nvml-interval-ms", "0.5")
    assert done.returncode == 2, done.stderr
    # the milliseconds typed, then what the setting got (seconds) and why it is refused
    assert "--nvml-interval-ms '0.5' (read as nvml_interval_s=0.0005: must be a number of seconds" in done.stderr


def test_missing_repository_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    done = cli("profile", "-m", "mlp_numpy", "--model-folder", str(missing), "-e", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert str(missing) in done.stderr and "does not exist" in done.stderr


def test_models_lists_the_repository() -> None:
    done = cli("models", "--model-folder", REPO)
    assert done.returncode == 0, done.stderr
    listed = {line.split("\t")[0]: line for line in done.stdout.splitlines()}
    assert set(listed) == {"mixed_inputs", "mlp_numpy", "sequence_mean", "torch_mlp"}
    assert "max_batch_size=32" in listed["mixed_inputs"] and "python" in listed["mixed_inputs"]


def test_models_of_a_missing_folder_exits_2(tmp_path: Path) -> None:
    done = cli("models", "--model-folder", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_profile_help() -> None:
    done = cli("profile", "--help")
    assert done.returncode == 0, done.stderr
    for flag in ("--model-names", "--model-folder", "--batch", "--concurrency", "--window-ms", "--export-path",
                 "--launch-mode", "--protocol"):
        assert flag in done.stdout


@pytest.mark.server
@pytest.mark.faults
def test_ctrl_c_ends_the_point_keeps_the_rows_cleans_up_and_exits_non_zero(tmp_path: Path) -> None:
    """RELIABILITY row 9: SIGINT (what Ctrl-C sends) during the second point of a real CLI run."""
    import signal
    import time

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer_widgets", "profile", "-m", "mlp_numpy", "--model-folder", REPO,
         "-b", "1,2,4", "-c", "1", "--window-ms", "400", "--baseline-seconds", "0.5", "-e", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        model_csv = out / "metrics-model.csv"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if model_csv.exists() and len(model_csv.read_text().strip().splitlines()) >= 2:  # header + 1 row
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the sweep ended before the interrupt: {proc.communicate()}"
        time.sleep(0.3)  # well inside the second point's windows
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"exited {took:.2f} s after SIGINT")
    assert proc.returncode == 130, (proc.returncode, stderr[-3000:])
    assert "interrupted" in stderr and "--resume" in stderr, stderr[-2000:]
    rows, _ = aw.load_results(out)
    assert len(rows) >= 1 and rows.loc[0, "status"] in ("ok", "unstable")
    assert took < 15, f"took {took:.1f} s to stop"  # the bound of RELIABILITY row 9 is 1-2 s; 15 s is a hang
    # the autouse fixture checks that no server, stub or client process is left
