"""Reading resource YAML from files and directories (kubectl apply -f semantics)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml


class DocumentError(ValueError):
    """A file that cannot be read as YAML; the message names the file and line."""


@dataclass(frozen=True)
class Document:
    source: str
    index: int
    body: Any

    @property
    def where(self) -> str:
        return f"{self.source}#{self.index}"


def yaml_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        elif path.exists():
            files.append(path)
        else:
            raise DocumentError(f"{path}: no such file or directory")
    return files


def load_documents(paths: Iterable[str | Path]) -> list[Document]:
    docs: list[Document] = []
    for path in yaml_files(paths):
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise DocumentError(f"{where}: broken YAML: {problem}") from None
        docs += [Document(str(path), i, body) for i, body in enumerate(loaded) if body is not None]
    return docs
