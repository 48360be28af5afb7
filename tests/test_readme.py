"""README.md stays true: its commands run, its Python example runs, its baselines table is current."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
TEXT = README.read_text()
COMMANDS = [line[2:] for line in re.findall(r"^\$ scaler .*$", TEXT, flags=re.M)]


def run_scaler(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaler", *args], cwd=cwd, capture_output=True, text=True)


def test_readme_documents_every_command():
    for command in ("baselines", "show", "estimate", "scale", "train", "search", "studies", "plot", "report",
                    "baseline-search"):
        assert f"### `scaler {command}" in TEXT


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for all the commands, in README order (`scaler studies show quick` reads what the search made):
    as the repository root, but writing any output into a temporary folder."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "examples").symlink_to(README.parent / "examples")
    (folder / "studies").mkdir()
    for recipe in (README.parent / "studies").glob("*.toml"):
        shutil.copy(recipe, folder / "studies")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command, workdir):
    result = run_scaler(shlex.split(command)[1:], workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "Traceback" not in result.stderr


def test_readme_baselines_table_is_current(tmp_path):
    table = re.search(r"<!-- baselines-table.*?-->\n```\n(.*?)```", TEXT, flags=re.S).group(1)
    assert run_scaler(["baselines"], tmp_path).stdout == table


def test_readme_python_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", TEXT, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "b0-phi2.json").exists()
