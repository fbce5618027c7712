"""`python -m osmf_jobs.synth OUT [--style-space vocabulary|painted] [--users N --products N --images-per-product N --seed S --noise X --tiny]`"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _main(argv: list[str] | None = None) -> int:
    from osmf_jobs.synth.spaces import SPACES
    from osmf_jobs.synth.world import SynthConfig, generate

    defaults = SynthConfig()
    parser = argparse.ArgumentParser(prog="osmf synth", description="Write a synthetic ad world (DESIGN §5 tables + truth/).")
    parser.add_argument("out", help="output directory (created)")
    parser.add_argument("--tiny", action="store_true", help="a tiny world for tests (seconds end to end)")
    parser.add_argument("--users", type=int)
    parser.add_argument("--products", type=int)
    parser.add_argument("--images-per-product", type=int)
    parser.add_argument("--products-per-user", type=float)
    parser.add_argument("--impressions-per-pair", type=float)
    parser.add_argument("--ctr", type=float)
    parser.add_argument("--noise", type=float, help=f"sd of the per-user logit noise (default {defaults.noise})")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--style-space", choices=sorted(SPACES), default=defaults.style_space,
                        help="how logged creatives are painted: vocabulary (OSMF's own style words, the default) or "
                             "painted (continuous colours, other motifs: only approximated by OSMF's captioner and renderer)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("out", "tiny") and v is not None}
    cfg = SynthConfig.tiny(**overrides) if args.tiny else SynthConfig(**overrides)
    problems = [f"--{k.replace('_', '-')} must be positive" for k, v in overrides.items() if k not in ("seed", "noise", "style_space") and v <= 0]
    if cfg.noise < 0:
        problems.append("--noise must be >= 0")
    if not 0 < cfg.ctr < 1:
        problems.append("--ctr must be between 0 and 1")
    if cfg.images_per_product < 2 or cfg.images_per_product > 360:
        problems.append("--images-per-product must be between 2 and 360")
    if problems:
        print(f"osmf synth: {'; '.join(problems)}", file=sys.stderr)
        return 2
    summary = generate(Path(args.out), cfg, progress=lambda msg: print(msg, file=sys.stderr))
    print(json.dumps({"out": str(Path(args.out).resolve()), **summary}))
    return 0


def main() -> None:
    from osmf_jobs.runtime import exit_cli

    exit_cli(_main)


if __name__ == "__main__":
    main()
