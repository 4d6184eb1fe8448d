"""Point every notebook's Colab badge and REPO_URL, and CITATION.cff, at pyproject.toml's Repository (idempotent).

    python tools/set_repo_url.py           # rewrite the files that disagree
    python tools/set_repo_url.py --check   # only report them; exit status 1 if any
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GITHUB = re.compile(r"^https://github\.com/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)(?:\.git)?/?$")
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/(?P<branch>[^/\s)]+)"
                   r"/notebooks/[^\s)]+?\.ipynb")
REPO_LINE = re.compile(r"^(?P<head>\s*REPO_URL\s*=\s*)(?P<quote>[\"'])(?P<value>.*?)(?P=quote)", re.MULTILINE)
CITATION_LINE = re.compile(r"^(?P<head>repository-code:\s*)(?P<value>\S+)[ \t]*$", re.MULTILINE)


def repo_url(root: Path = ROOT) -> str:
    """The Repository address in [project.urls] of pyproject.toml."""
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
        url = tomllib.loads(text).get("project", {}).get("urls", {}).get("Repository")
    except ModuleNotFoundError:  # Python < 3.11: the one line we need
        section = re.search(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
        line = section and re.search(r"^Repository\s*=\s*[\"']([^\"']+)[\"']", section.group(1), re.MULTILINE)
        url = line.group(1) if line else None
    if not url:
        raise ValueError("pyproject.toml has no Repository under [project.urls]: add "
                         'Repository = "https://github.com/<owner>/<name>" there.')
    if not GITHUB.match(url):
        raise ValueError(f"Repository {url!r} is not a https://github.com/<owner>/<name> address, "
                         "the only kind Colab opens notebooks from.")
    return url


def badge_url(url: str, notebook: str, branch: str = "main") -> str:
    """The Colab address of notebooks/<notebook> in the GitHub repository at `url`."""
    match = GITHUB.match(url)
    return (f"https://colab.research.google.com/github/{match['owner']}/{match['name']}/blob/{branch}"
            f"/notebooks/{notebook}")


def notebook_urls(nb: dict) -> tuple:
    """The Colab badge addresses (markdown cells) and REPO_URL values (code cells) a notebook holds."""
    badges, repos = [], []
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            badges += [m.group(0) for m in BADGE.finditer(source)]
        elif cell["cell_type"] == "code":
            repos += [m["value"] for m in REPO_LINE.finditer(source)]
    return badges, repos


def _rewrite(source: list, pattern, replace) -> list:
    """A cell's source lines with `pattern` replaced line by line (line breaks stay where they were)."""
    return [pattern.sub(replace, line) for line in source]


def update_notebook(path: Path, url: str, write: bool = True) -> bool:
    """Set the badge and REPO_URL of one notebook to `url`; True if they differed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            source = _rewrite(cell["source"], BADGE, lambda m: badge_url(url, path.name, m["branch"]))
        elif cell["cell_type"] == "code":
            source = _rewrite(cell["source"], REPO_LINE, lambda m: f'{m["head"]}"{url}"')
        else:
            continue
        changed |= source != cell["source"]
        cell["source"] = source
    if changed and write:  # the notebooks' own format: one-space indent, UTF-8 as is, final newline
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def update_citation(path: Path, url: str, write: bool = True) -> bool:
    """Set CITATION.cff's repository-code to `url`; True if it differed."""
    text = path.read_text(encoding="utf-8")
    new = CITATION_LINE.sub(lambda m: f'{m["head"]}"{url}"', text)
    if new != text and write:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv=None) -> int:
    """Rewrite (or with --check only list) the notebooks and CITATION.cff where they disagree with pyproject.toml."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file disagrees")
    args = parser.parse_args(argv)
    url = repo_url()
    changed = [path for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
               if update_notebook(path, url, write=not args.check)]
    if (ROOT / "CITATION.cff").exists() and update_citation(ROOT / "CITATION.cff", url, write=not args.check):
        changed.append(ROOT / "CITATION.cff")
    for path in changed:
        print(f"{'differs' if args.check else 'updated'}: {path.relative_to(ROOT)}")
    if not changed:
        print(f"every notebook and CITATION.cff already point at {url}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
