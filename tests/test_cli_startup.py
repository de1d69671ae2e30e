"""The CLI answers at once: only the requested subcommand is built, torch stays unimported, pipes close quietly."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import ecglens
from ecglens.cli import COMMANDS, build_parser, main
from ecglens.samples import samples_dir


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecglens", *args], capture_output=True, text=True, **kwargs)


def _torch_after(*args: str) -> bool:
    code = ("import sys, runpy; sys.argv = ['ecglens', *%r]\n"
            "try:\n    runpy.run_module('ecglens', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "sys.stderr.write('TORCH=%%d' %% ('torch' in sys.modules))" % (list(args),))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return "TORCH=1" in done.stderr


def test_version():
    done = _run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"ecglens {ecglens.__version__}"


@pytest.mark.parametrize("args", [("--help",), ("read", str(samples_dir() / "records100/00000/00172_lr.hea")),
                                  ("train", "protoecgnet", "--help"), ("predict", "--help"), ("explain", "--help")])
def test_no_torch_before_a_model_runs(args):
    assert not _torch_after(*args)


def _actions(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, action


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help(command):
    parser = build_parser([command])
    missing = [f"{path}: {'/'.join(a.option_strings) or a.dest}" for path, a in _actions(parser, "ecglens")
               if not a.help]
    assert not missing


def test_top_level_help_lists_every_command_without_building_them(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_closed_pipe_is_not_a_traceback():
    records = str(samples_dir() / "records100")
    proc = subprocess.Popen([sys.executable, "-m", "ecglens", "read", records], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_unknown_command_is_a_usage_error():
    done = _run("nope")
    assert done.returncode == 2 and "invalid choice" in done.stderr
