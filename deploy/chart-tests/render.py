#!/usr/bin/env python3
"""Render the chart in deploy/chart for each scenario in this folder, with Helm itself.

A scenario is a values file `<scenario>.values.yaml`; its render is checked in beside it as
`<scenario>.yaml`. The chart test (vmdhcp-api/tests/chart.rs) reads those renders, checks them
structurally (RBAC, names, args, ports, probes), checks that they were made from the current
chart sources (the `chart-digest` header), and, where a renderer is installed, renders again
and compares.

Renderer: the `helm` CLI when it is on PATH, else the Helm SDK through the `helm-python-sdk`
wheel (`pip install helm-python-sdk`, import name `helm_python`: Helm's Go engine in a shared
library, no `helm` binary needed).

    python3 deploy/chart-tests/render.py              # re-render every scenario and lint (write)
    python3 deploy/chart-tests/render.py render NAME  # print one fresh render to stdout
    python3 deploy/chart-tests/render.py lint         # helm lint --strict, every scenario
    python3 deploy/chart-tests/render.py which        # which renderer would be used

Exit status 3 means no renderer is installed; the chart test then skips its re-render checks.

A values file may start with `# release: NAME` and `# namespace: NS` lines (defaults:
harvester-vm-dhcp-controller in harvester-system, as Harvester installs it).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "chart"
DEFAULT_RELEASE = "harvester-vm-dhcp-controller"
DEFAULT_NAMESPACE = "harvester-system"
NO_RENDERER = 3


class NoRenderer(Exception):
    """Neither the helm CLI nor the Helm SDK wheel is installed."""


def scenarios() -> list[str]:
    return sorted(p.name[: -len(".values.yaml")] for p in HERE.glob("*.values.yaml"))


def values_path(scenario: str) -> Path:
    return HERE / f"{scenario}.values.yaml"


def header_field(text: str, key: str, default: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].strip()
    return default


def chart_digest(scenario: str) -> str:
    """sha256 over the chart's files (except crds/, which Helm does not render), sorted by their
    `/`-separated path, each as path NUL content NUL, then `values` NUL and the scenario's values
    file. vmdhcp-api/tests/chart.rs computes the same digest: change both
    together."""
    h = hashlib.sha256()
    files = sorted(
        (p.relative_to(CHART).as_posix(), p)
        for p in CHART.rglob("*")
        if p.is_file() and p.relative_to(CHART).parts[0] != "crds"
    )
    for rel, p in files:
        h.update(rel.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    h.update(b"values\0")
    h.update(values_path(scenario).read_bytes())
    return "sha256:" + h.hexdigest()


def renderer() -> str:
    if shutil.which("helm"):
        return "helm"
    try:
        import helm_python  # noqa: F401
    except ImportError as e:
        raise NoRenderer(
            "no Helm renderer: install the helm CLI or `pip install helm-python-sdk`"
        ) from e
    return "helm_python"


def render(scenario: str) -> str:
    """`helm template` of the chart with the scenario's values: YAML documents, each with a
    `# Source:` comment, NOTES.txt left out."""
    values_file = values_path(scenario)
    text = values_file.read_text()
    release = header_field(text, "release", DEFAULT_RELEASE)
    namespace = header_field(text, "namespace", DEFAULT_NAMESPACE)
    if renderer() == "helm":
        out = subprocess.run(
            ["helm", "template", release, str(CHART), "--namespace", namespace,
             "--values", str(values_file)],
            check=True, capture_output=True, text=True,
        )
        return out.stdout
    import helm_python as helm

    values = helm.values_from_yaml(text) or {}
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
    parts = []
    for path in sorted(manifests):
        body = manifests[path]
        if path.endswith("NOTES.txt") or not body.strip():
            continue
        parts.append(f"---\n# Source: {path}\n{body.strip()}\n")
    return "".join(parts)


def lint() -> list[str]:
    """`helm lint --strict` with each scenario's values; returns the problems found."""
    problems = []
    for scenario in scenarios():
        values_file = values_path(scenario)
        namespace = header_field(values_file.read_text(), "namespace", DEFAULT_NAMESPACE)
        if renderer() == "helm":
            out = subprocess.run(
                ["helm", "lint", "--strict", str(CHART), "--namespace", namespace,
                 "--values", str(values_file)],
                capture_output=True, text=True,
            )
            if out.returncode != 0:
                problems.append(f"{scenario}: {out.stdout}{out.stderr}")
            continue
        import helm_python as helm

        values = helm.values_from_yaml(values_file.read_text()) or {}
        report = helm.lint(str(CHART), values, strict=True, namespace=namespace)
        for message in report.get("messages") or []:
            # Severity: 1 info, 2 warning, 3 error; --strict fails on warnings.
            if message.get("severity", 0) >= 2:
                problems.append(f"{scenario}: {message.get('path')}: {message.get('error')}")
        problems.extend(f"{scenario}: {e}" for e in report.get("errors") or [])
    return problems


def write() -> int:
    problems = lint()
    for scenario in scenarios():
        text = values_path(scenario).read_text()
        head = (
            f"# Rendered from deploy/chart with deploy/chart-tests/{scenario}.values.yaml by\n"
            f"# `python3 deploy/chart-tests/render.py`. Do not edit; re-run it after changing the chart.\n"
            f"# release: {header_field(text, 'release', DEFAULT_RELEASE)}\n"
            f"# namespace: {header_field(text, 'namespace', DEFAULT_NAMESPACE)}\n"
            f"# chart-digest: {chart_digest(scenario)}\n"
        )
        (HERE / f"{scenario}.yaml").write_text(head + render(scenario))
        print(f"render.py: wrote {scenario}.yaml", file=sys.stderr)
    for p in problems:
        print(f"render.py: lint: {p}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    try:
        match argv:
            case [] | ["write"]:
                return write()
            case ["render", scenario]:
                sys.stdout.write(render(scenario))
                return 0
            case ["lint"]:
                problems = lint()
                for p in problems:
                    print(p)
                return 1 if problems else 0
            case ["which"]:
                print(renderer())
                return 0
            case ["digest", scenario]:
                print(chart_digest(scenario))
                return 0
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except NoRenderer as e:
        print(f"render.py: {e}", file=sys.stderr)
        return NO_RENDERER
    except subprocess.CalledProcessError as e:
        print(f"render.py: {' '.join(e.cmd)} failed:\n{e.stderr}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
