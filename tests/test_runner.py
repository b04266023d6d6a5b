import logging
import sys
from types import SimpleNamespace

import pytest

from odevae.errors import InputError
from odevae.runner import run_script


def fake_snakemake(tmp_path):
    return SimpleNamespace(log=[str(tmp_path / "job.log")], threads=1)


def test_output_and_library_logs_go_to_the_rule_log(tmp_path, capfd):
    lib = logging.getLogger("some.library")
    lib.addHandler(logging.StreamHandler(sys.__stderr__))
    lib.propagate = False
    lib.setLevel(logging.INFO)

    def main(snakemake):
        print("printed")
        print("to stderr", file=sys.stderr)
        lib.info("library says hello")

    run_script(fake_snakemake(tmp_path), main)
    log = (tmp_path / "job.log").read_text()
    assert "printed" in log and "to stderr" in log and "library says hello" in log
    out, err = capfd.readouterr()
    assert "library says hello" not in out + err


def test_input_error_is_one_line_and_exit_status_1(tmp_path, capfd):
    def main(snakemake):
        raise InputError(
            "expected a number, found 'abc'", file="v.tsv", column="x1", line=3
        )

    with pytest.raises(SystemExit) as exit_info:
        run_script(fake_snakemake(tmp_path), main)
    assert exit_info.value.code == 1
    message = "file v.tsv, column 'x1', line 3: expected a number, found 'abc'"
    _, err = capfd.readouterr()
    assert err.strip() == f"odevae: {message}"
    assert message in (tmp_path / "job.log").read_text()
    assert "Traceback" not in (tmp_path / "job.log").read_text()


def test_threads_follow_the_rule_where_the_script_loaded_torch(tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run_script(SimpleNamespace(log=[str(tmp_path / "job.log")], threads=1), print)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
