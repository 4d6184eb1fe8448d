"""A clone of the repository is self-contained: no path outside it, no dead link, one repository address."""

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A path that only exists on some machine: the source folder that sat beside the checkout, or an absolute
# machine directory at the start of a path (a relative folder of the same name is fine). Colab's /content/ is allowed.
OUTSIDE = re.compile(r"\.\./shared\b|(?<![\w.~/-])/(?:work|tmp|root|home|Users|mnt)/")
URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>)\]]*")
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def tracked_files():
    """The git-tracked files of this checkout, or None when it is not a git checkout."""
    if shutil.which("git") is None:
        return None
    try:
        top = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=True).stdout.strip()
        if Path(top).resolve() != ROOT:
            return None  # the tests sit inside some other repository: not a checkout of this one
        names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"],
                               capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError:
        return None
    return [name for name in names.split("\0") if name]


def _tracked_or_skip():
    files = tracked_files()
    if files is None:
        pytest.skip("not a git checkout: no list of tracked files")
    return files


def test_no_tracked_file_names_a_path_outside_the_repository():
    """No tracked file names the sibling shared folder or an absolute machine path (URLs and /content/ are fine)."""
    hits = []
    for name in _tracked_or_skip():
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(URL.sub("", line)):
                hits.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not hits, "paths outside the repository (point to docs/ or a relative path instead):\n" + "\n".join(hits)


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def markdown_sources():
    """(file, markdown text) of README.md, docs/*.md and every notebook's markdown cells."""
    sources = [(path, path.read_text(encoding="utf-8"))
               for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if path.is_file()]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        sources.append((path, "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")))
    return sources


def relative_links(text: str):
    """The link targets in markdown text that point into the repository (no URLs, no bare anchors)."""
    text = CODE.sub("", text)
    for target in [*INLINE_LINK.findall(text), *REFERENCE_LINK.findall(text)]:
        if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith("#"):
            yield target


def test_relative_markdown_links_resolve():
    """Every relative link in README.md, docs/*.md and the notebooks' markdown reaches a file of the repository."""
    tracked = tracked_files()
    tracked_paths = None if tracked is None else {ROOT / name for name in tracked}
    broken = []
    for source, text in markdown_sources():
        for target in relative_links(text):
            file_part, _, anchor = unquote(target).partition("#")
            file_part = file_part.split("?")[0]
            base = ROOT if file_part.startswith("/") else source.parent
            path = (base / file_part.lstrip("/")).resolve()
            where = f"{source.relative_to(ROOT)}: {target}"
            if ROOT not in path.parents and path != ROOT or not path.exists():
                broken.append(f"{where} (no such file in the repository)")
            elif tracked_paths is not None and path.is_file() and path not in tracked_paths:
                broken.append(f"{where} (not tracked by git: a clone lacks it)")
            elif anchor and path.suffix == ".md":
                anchors = {slug(h) for h in HEADING.findall(CODE.sub("", path.read_text(encoding="utf-8")))}
                if anchor not in anchors:
                    broken.append(f"{where} (no heading with that anchor)")
    assert not broken, "broken markdown links:\n" + "\n".join(broken)


def _set_repo_url():
    """tools/set_repo_url.py as a module."""
    spec = importlib.util.spec_from_file_location("set_repo_url", ROOT / "tools" / "set_repo_url.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_point_at_the_repository_of_pyproject():
    """Every notebook's Colab badge and REPO_URL name pyproject.toml's [project.urls] Repository."""
    tool = _set_repo_url()
    url = tool.repo_url(ROOT)
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        badges, repos = tool.notebook_urls(json.loads(path.read_text(encoding="utf-8")))
        assert badges and repos, f"{path.name} lacks its Colab badge or its REPO_URL line"
        assert set(repos) == {url}, f"{path.name}: REPO_URL {repos} is not {url}: run python tools/set_repo_url.py"
        branches = [badge.split("/blob/")[1].split("/")[0] for badge in badges]
        assert badges == [tool.badge_url(url, path.name, branch) for branch in branches], \
            f"{path.name}: badge {badges} is not for {url}: run python tools/set_repo_url.py"
        assert not tool.update_notebook(path, url, write=False)


def test_set_repo_url_rewrites_a_fork_once(tmp_path):
    """A fork's address reaches the badge and REPO_URL, and a second run changes nothing."""
    tool = _set_repo_url()
    source = sorted((ROOT / "notebooks").glob("*.ipynb"))[0]
    path = tmp_path / source.name
    shutil.copy(source, path)
    fork = "https://github.com/someone/a-fork"
    assert tool.update_notebook(path, fork)
    badges, repos = tool.notebook_urls(json.loads(path.read_text(encoding="utf-8")))
    assert repos == [fork]
    assert badges == [f"https://colab.research.google.com/github/someone/a-fork/blob/main/notebooks/{source.name}"]
    assert not tool.update_notebook(path, fork)
    assert path.read_text(encoding="utf-8").endswith("}\n")


def test_every_notebook_is_valid_nbformat_with_cell_ids():
    import nbformat
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        nbformat.validate(notebook)  # raises on a malformed notebook
        assert all("id" in cell for cell in notebook["cells"]), f"{path.name}: a cell lacks its id"
