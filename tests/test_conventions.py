"""The files every public repository has: LICENSE, CITATION.cff, a CI workflow that runs the README's commands
(the same test command as .ci/run) and a linter configuration the code passes."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _set_repo_url():
    """tools/set_repo_url.py as a module (it reads pyproject.toml's Repository)."""
    spec = importlib.util.spec_from_file_location("set_repo_url", ROOT / "tools" / "set_repo_url.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shell_commands(text: str) -> list:
    """The commands of shell text: one a line or joined by &&, comments dropped."""
    lines = (re.sub(r"(^|\s)#.*", "", line) for line in text.splitlines())
    return [command.strip() for line in lines for command in line.split("&&") if command.strip()]


def workflow_commands() -> list:
    """The shell commands of every step of the CI workflow, in order."""
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return [command for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
            for command in shell_commands(step["run"])]


def readme_commands() -> list:
    """The commands of the README's bash blocks."""
    return [command for block in BASH_BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
            for command in shell_commands(block)]


def pytest_commands(commands: list) -> list:
    return [command for command in commands if command.startswith("python -m pytest")]


def test_shell_commands_split_lines_joins_and_comments():
    assert shell_commands('pip install -e ".[x]" && python -m pytest   # all\n# only a comment\n\nruff check .') == [
        'pip install -e ".[x]"', "python -m pytest", "ruff check ."]


def test_ci_workflow_and_ci_run_run_the_readme_test_command():
    """The hosting service's workflow and .ci/run run the README's one test command, and the workflow its install."""
    readme = readme_commands()
    (test_command,) = pytest_commands(readme)  # the README names one test command
    ci_run = shell_commands((ROOT / ".ci" / "run").read_text(encoding="utf-8"))
    workflow = workflow_commands()
    for name, commands in ((".ci/run", ci_run), ("ci.yml", workflow)):
        assert pytest_commands(commands) == [test_command], f"{name}: {pytest_commands(commands)}, not {test_command}"
    install = next(command for command in readme if command.startswith("pip install -e"))
    assert install in workflow and "ruff check ." in workflow


def test_workflow_runs_python_3_11_on_ubuntu():
    yaml = pytest.importorskip("yaml")
    (job,) = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    assert any(step.get("with", {}).get("python-version") == "3.11" for step in job["steps"])


def test_license_is_mit():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 The cifar-report-repro authors" in text


def test_citation_names_the_repository_of_pyproject_and_the_report():
    yaml = pytest.importorskip("yaml")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0" and citation["authors"]
    assert citation["repository-code"] == _set_repo_url().repo_url(ROOT), "run python tools/set_repo_url.py"
    (report,) = [ref for ref in citation["references"] if ref["type"] == "report"]
    assert report["title"].startswith("Image classification on CIFAR-10 and CIFAR-100") and report["authors"]


def test_set_repo_url_rewrites_the_citation_of_a_fork_once(tmp_path):
    yaml = pytest.importorskip("yaml")
    tool, path = _set_repo_url(), tmp_path / "CITATION.cff"
    shutil.copy(ROOT / "CITATION.cff", path)
    fork = "https://github.com/someone/a-fork"
    assert tool.update_citation(path, fork)
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["repository-code"] == fork
    assert not tool.update_citation(path, fork)


def test_code_passes_ruff():
    """`ruff check .` with pyproject.toml's [tool.ruff] finds nothing (skipped where ruff is not installed)."""
    if importlib.util.find_spec("ruff") is not None:
        ruff = [sys.executable, "-m", "ruff"]
    elif shutil.which("ruff"):
        ruff = [shutil.which("ruff")]
    else:
        pytest.skip("ruff is not installed (pip install ruff)")
    done = subprocess.run([*ruff, "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, f"ruff check . found problems:\n{done.stdout}{done.stderr}"


def _library_imports() -> dict:
    """Each module of common/ and the modules of common/ it imports (at any depth of its code)."""
    import ast
    graph = {}
    for path in sorted((ROOT / "common").glob("*.py")):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("common")):
                module = (node.module or "").removeprefix("common").lstrip(".")
                found |= {module} if module else {alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("common.")}
        graph[path.stem] = {name.split(".")[0] for name in found} - {path.stem}
    return graph


def test_the_library_imports_form_no_cycle_and_never_reach_tools():
    graph = _library_imports()
    assert {name for names in graph.values() for name in names} <= set(graph)  # only modules of common/
    assert graph["experiment"] >= {"train", "results", "launch"} and "experiment" not in graph["train"]
    done, path = set(), []

    def visit(module):
        assert module not in path, f"import cycle: {' -> '.join(path[path.index(module):] + [module])}"
        if module not in done:
            path.append(module)
            for name in sorted(graph[module]):
                visit(name)
            path.pop()
            done.add(module)
    for module in graph:
        visit(module)
    sources = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "common").glob("*.py"))
    assert not re.search(r"^\s*(import|from) (tools|reproduce|bench|gpucheck)\b", sources, re.MULTILINE)
