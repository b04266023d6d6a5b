import logging
import subprocess
import sys
import textwrap
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


def _job_script(tmp_path, body: str):
    """A script laid out as Snakemake runs a rule's script: ``snakemake`` bound in
    ``__main__``, then the script's code; an atexit marker shows finalisation."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import atexit, pathlib
            from types import SimpleNamespace
            from odevae.runner import run_script
            snakemake = SimpleNamespace(log=[{str(tmp_path / "job.log")!r}], threads=1)
            atexit.register(pathlib.Path({str(tmp_path / "finalised")!r}).touch)
            """
        )
        + textwrap.dedent(body)
    )
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path
    )


def test_a_job_process_ends_at_once_with_its_outputs_and_log_written(tmp_path):
    result = _job_script(
        tmp_path,
        """
        def main(snakemake):
            pathlib.Path("out.txt").write_text("done")
            print("written")
        run_script(snakemake, main)
        pathlib.Path("after").touch()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == "done"
    assert "written" in (tmp_path / "job.log").read_text()
    # Python's finalisation was skipped, and so was anything after the call
    assert not (tmp_path / "finalised").exists()
    assert not (tmp_path / "after").exists()


def test_a_failing_job_process_still_fails(tmp_path):
    result = _job_script(
        tmp_path,
        """
        def main(snakemake):
            raise RuntimeError("broken")
        run_script(snakemake, main)
        """,
    )
    assert result.returncode == 1
    assert "RuntimeError: broken" in result.stderr
