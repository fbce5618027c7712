"""Writes tests/data/jobset.x-k8s.io_jobsets.schema.json: the v1alpha2 `openAPIV3Schema` of the JobSet CRD
that hack/build-control-plane.sh copies from the sigs.k8s.io/jobset module (the version in
hack/control-plane-versions.env), descriptions left out (820 KB → 74 KB).

    python tests/data/build_jobset_schema.py [CRD.yaml]

tests/unit/test_builders.py validates every JobSet the operator builds against it, and checks the file
is what this script writes from the built CRD whenever the control-plane tools are there.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = HERE / "jobset.x-k8s.io_jobsets.schema.json"


def jobset_version() -> str:
    for line in (REPO / "hack" / "control-plane-versions.env").read_text().splitlines():
        if line.startswith("JOBSET_VERSION="):
            return line.split("=", 1)[1].strip()
    raise SystemExit("JOBSET_VERSION is not in hack/control-plane-versions.env")


def built_crd() -> Path:
    tools = Path(os.environ.get("OSMF_TOOLS_DIR") or Path.home() / ".cache" / "osmf" / "tools")
    return tools / f"jobset-{jobset_version()}" / "crds" / "jobset.x-k8s.io_jobsets.yaml"


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
    return {"jobsetVersion": jobset_version(), "openAPIV3Schema": without_descriptions(version["schema"]["openAPIV3Schema"])}


def text(crd: dict[str, Any]) -> str:
    return json.dumps(schema(crd), sort_keys=True, separators=(",", ":")) + "\n"


def main(argv: list[str]) -> None:
    source = Path(argv[0]) if argv else built_crd()
    OUT.write_text(text(yaml.safe_load(source.read_text())))
    print(f"wrote {OUT} from {source}")


if __name__ == "__main__":
    main(sys.argv[1:])
