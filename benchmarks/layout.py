"""Layout figures of the source tree (issue 19): lines per file, function length median and p90,
the largest classes, and the files over the 500-line target.

    python benchmarks/layout.py            # the table for the working tree
    python benchmarks/layout.py --json     # the same, machine-readable

Function length counts the lines from ``def`` to the function's last line (decorators and the
docstring included), for every function and method, nested ones too.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("toolkit", "models", "pipelines")
FILE_TARGET = 500


def measure(root: Path = ROOT) -> dict:
    files: dict[str, int] = {}
    functions: list[int] = []
    classes: list[tuple[int, str]] = []
    for folder in SOURCES:
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_text()
            rel = str(path.relative_to(root))
            files[rel] = len(text.splitlines())
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    functions.append(node.end_lineno - node.lineno + 1)
                elif isinstance(node, ast.ClassDef):
                    classes.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
    functions.sort()
    classes.sort(reverse=True)
    return {
        "files": len(files),
        "lines": sum(files.values()),
        "largest_files": sorted(files.items(), key=lambda kv: -kv[1])[:10],
        "files_over_target": sum(n > FILE_TARGET for n in files.values()),
        "functions": len(functions),
        "function_median": statistics.median(functions),
        "function_p90": functions[int(0.9 * (len(functions) - 1))],
        "largest_classes": classes[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    m = measure()
    if parser.parse_args().json:
        print(json.dumps(m, indent=1))
        return
    print(f"{m['files']} files, {m['lines']:,} lines; {m['files_over_target']} over {FILE_TARGET} lines")
    print(f"{m['functions']} functions: median {m['function_median']} lines, p90 {m['function_p90']}")
    print("largest files:  " + ", ".join(f"{name} {n}" for name, n in m["largest_files"]))
    print("largest classes: " + ", ".join(f"{name} {n}" for n, name in m["largest_classes"]))


if __name__ == "__main__":
    main()
