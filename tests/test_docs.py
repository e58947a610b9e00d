"""The README matches the code: the two commands first, every setting documented."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from bandit.config.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_readme_opens_with_the_two_commands():
    block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert block is not None and README.index(block.group(0)) < 40
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


def test_every_setting_is_in_the_configuration_table():
    table = README[README.index("## Configuration"):]
    missing = [f"BANDIT_{f.name.upper()}" for f in fields(Settings)
               if f"`BANDIT_{f.name.upper()}`" not in table]
    assert not missing, missing


def test_ci_runs_make_test():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci
