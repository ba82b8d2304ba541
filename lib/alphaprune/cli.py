"""Command line: ``python -m alphaprune train|prune|evaluate|shrink|report PARAMS.yaml``.

Bad input gives a one-line ``error: …`` on stderr and exit code 2; nothing runs before the
config has been validated.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alphaprune",
        description="α-schedule channel pruning of VGG autoencoders, and weekly reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def experiment(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("params", help="experiment YAML file")
        p.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="override a config key, e.g. --set optimizer.lr=0.01 (repeatable)",
        )  # fmt: skip
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        return p

    experiment("train", "train the original (ungated) autoencoder")
    p = experiment("prune", "prune with the α schedule, starting from init_from / --original")
    p.add_argument("--original", help="checkpoint to start from (overrides init_from)")
    p = experiment("evaluate", "evaluate a checkpoint on the validation crops at its stored α")
    p.add_argument("--checkpoint", help="checkpoint (default: the run's checkpoints/last.pt)")
    p.add_argument("--alpha", type=float, help="evaluate at this α (needs --override-alpha)")
    p.add_argument("--override-alpha", action="store_true", help="allow an α other than stored")
    p = experiment("shrink", "fold gates into the weights and cut pruned channels")
    p.add_argument("--checkpoint", help="gated checkpoint (default: the run's last.pt)")
    p.add_argument("--out", help="where to write the shrunk model (default: RUN/shrunk.pt)")

    p = sub.add_parser("report", help="run the weekly report notebooks and export HTML/PDF")
    p.add_argument("params", help="weekly report YAML, e.g. params/week09.yaml")
    p.add_argument(
        "--force",
        action="store_true",
        help="rerun every stage and retrain every run, even if unchanged",
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "report":
        from .report import run_report

        folder = run_report(args.params, force=args.force)
        print(f"report written to {folder}")
        return 0

    from .config import load_config

    cfg = load_config(args.params, args.overrides)
    progress = not args.no_progress
    if args.command == "train":
        from .train import train_baseline

        result = train_baseline(cfg, progress=progress)
        print(f"baseline done: {result.checkpoint}")
    elif args.command == "prune":
        from .train import prune

        result = prune(cfg, original=args.original, progress=progress)
        print(f"pruning done: {result.checkpoint}")
    elif args.command == "evaluate":
        from .checkpoint import last_path, load_model
        from .evaluate import evaluate
        from .train import make_datasets

        path = Path(args.checkpoint) if args.checkpoint else last_path(cfg.run_dir)
        model = load_model(path, alpha=args.alpha, override_alpha=args.override_alpha)
        scores = evaluate(model, make_datasets(cfg)[1], batch_size=cfg.data.batch_size)
        alpha = args.alpha if model.alpha_overridden else model.checkpoint_alpha
        print(json.dumps({"checkpoint": str(path), "alpha": alpha, **scores}))
    elif args.command == "shrink":
        from .checkpoint import last_path, shrink_checkpoint

        path = Path(args.checkpoint) if args.checkpoint else last_path(cfg.run_dir)
        out = Path(args.out) if args.out else cfg.run_dir / "shrunk.pt"
        summary = shrink_checkpoint(path, out, image_size=cfg.data.crop)
        print(json.dumps(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        message = "; ".join(lines) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
