"""A failing job: the traceback in its log, one line on the terminal, exit status 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.errors import DataError
from pipeline_lib.workflow import job_logging, one_line


def _fail(log: Path, error: Exception) -> None:
    with job_logging(log):
        print("working")
        raise error


def test_a_user_error_prints_its_message_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "logs" / "job.log"
    with pytest.raises(SystemExit) as exit_info:
        _fail(log, DataError("vol.zarr: array 'image': chunk c/0/0/1 is damaged"))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == "Error: vol.zarr: array 'image': chunk c/0/0/1 is damaged\n"
    text = log.read_text()
    assert "working" in text and "Traceback (most recent call last)" in text and "DataError" in text


def test_a_bug_names_its_type_and_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "job.log"
    with pytest.raises(SystemExit):
        _fail(log, KeyError("boom\nsecond line"))
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == f"Error: KeyError: 'boom\\nsecond line' (traceback in {log})\n"
    assert "Traceback" not in err


def test_one_line_joins_a_multi_line_message() -> None:
    assert one_line(RuntimeError("a\n  b"), "x.log") == "Error: RuntimeError: a b (traceback in x.log)"


def test_a_job_that_succeeds_leaves_its_output_in_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with job_logging(tmp_path / "ok.log"):
        print("done")
    assert capsys.readouterr().err == ""
    assert "done" in (tmp_path / "ok.log").read_text()


def test_an_error_re_raised_from_a_worker_keeps_only_its_message() -> None:
    wrapped = DataError(
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    read()\n'
        "pipeline_lib.errors.DataError: vol.zarr: array 'image': chunk c/0/0/1 is damaged (ValueError: crc)\n"
    )
    assert one_line(wrapped, "x.log") == "Error: vol.zarr: array 'image': chunk c/0/0/1 is damaged (ValueError: crc)"
