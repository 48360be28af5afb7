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
def workdir(tmp_path_factory, quick_study, quick_baseline_study):
    """One folder for all the commands, in README order (`scaler studies show quick` reads what the search made):
    as the repository root, but writing any output into a temporary folder. The quick studies are the session's
    (the same commands, trained once): `scaler search --quick --budget-gflops 4` and `scaler baseline-search
    --quick --target-mflops 400` here resume them finished and report them, as they do for a user who runs them
    twice."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "examples").symlink_to(README.parent / "examples")
    (folder / "studies").mkdir()
    for recipe in (README.parent / "studies").glob("*.toml"):
        shutil.copy(recipe, folder / "studies")
    trained, done = quick_study
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.copy(trained / "studies" / "quick.db", folder / "studies" / "quick.db")
    trained, done = quick_baseline_study
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.copy(trained / "studies" / "baseline-quick.db", folder / "studies" / "baseline-quick.db")
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
    (tmp_path / "studies").mkdir()
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "studies" / "b0-phi2.json").exists()


def test_readme_examples_write_only_under_studies_which_git_ignores():
    """The examples, run from the repository root, leave nothing in it: every file they name goes under
    studies/, and everything generated there is out of `git status`; what ships there is not."""
    outputs = [args[i + 1] for args in map(shlex.split, COMMANDS)
               for i, a in enumerate(args) if a in ("-o", "--output")]
    outputs += re.findall(r'save_spec\(\w+, "([^"]+)"\)', TEXT)
    assert outputs and all(path.startswith("studies/") for path in outputs), outputs
    if shutil.which("git") is None or not (README.parent / ".git").exists():
        pytest.skip("not a git checkout")
    generated = ["studies/quick.db", "studies/quick.log", "studies/quick-best.json", "studies/family.png",
                 "studies/quick-report/report.md", "studies/baseline-quick-baseline.json", *outputs]
    shipped = ["studies/README.md", "studies/default.toml", "studies/cifar10.toml", "studies/finding.toml"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *generated, *shipped], cwd=README.parent,
                             capture_output=True, text=True).stdout.split()
    assert sorted(ignored) == sorted(set(generated))
