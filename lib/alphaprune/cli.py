"""Command line: ``python -m alphaprune train|prune|evaluate|shrink|export|report|study
PARAMS.yaml`` and ``python -m alphaprune runs list|gc`` (``study --dry-run`` prints a study's plan
and cost).

Exit codes follow :mod:`alphaprune.errors`: bad input (a :class:`UserError`) gives a one-line
``error: …`` on stderr and code 2, and nothing runs before the config has been validated; a run
whose loss becomes inf/NaN stops with code 3 (:class:`Diverged`; its last finite checkpoint is
kept); a failed report stage or export gives code 1 and names the notebook holding the error;
an ``OSError`` (a folder that cannot be created, a full disk) is one line and code 2 as well.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from alphaprune.errors import (
    AlphapruneError,
    Diverged,
    RunFailed,
    UserError,
    one_line,
)

__all__ = ["main", "EXIT_USAGE", "EXIT_DIVERGED"]

EXIT_USAGE = UserError.exit_code

#: the extra that brings each optional top-level package (pyproject.toml)
_EXTRA_OF = {
    **dict.fromkeys(
        ["pandas", "matplotlib", "PIL", "skimage", "sklearn", "scipy", "tqdm", "psutil"], "train"
    ),
    "pytorch_msssim": "train",
    **dict.fromkeys(["papermill", "nbconvert", "nbformat", "ipykernel", "ipywidgets"], "report"),
    "pynvml": "bench",
    **dict.fromkeys(["onnx", "onnxruntime", "onnxscript"], "deploy"),
    "torch_pruning": "compare",
    **dict.fromkeys(["dask", "distributed"], "dask"),
}
EXIT_DIVERGED = Diverged.exit_code


def _json(data: dict) -> str:
    """``data`` as JSON; a RunFailed naming the keys when a number is inf/NaN."""
    bad = [k for k, v in data.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        shown = ", ".join(f"{k}={data[k]}" for k in bad)
        raise RunFailed(f"{data.get('checkpoint') or data.get('source')}: non-finite {shown}")
    return json.dumps(data, allow_nan=False)


def _ci_key(key: str) -> bool:
    return key.endswith(("_ci_low", "_ci_high"))


def _study_parser(sub) -> None:
    """The ``study`` sub-command (run by :func:`alphaprune.study.command.run_command`)."""
    p = sub.add_parser(
        "study",
        help="run a study's missing runs (reused from the run store) and write its tables",
        description="Run (or reuse) every run of a study and write its tables, figures and "
        "study.json; a killed study resumes. See docs/studies.md.",
    )
    p.add_argument("params", help="params YAML with a study: section")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--out", help="output folder (default reports/studies/<name>)")
    p.add_argument("--root", help="run store (default: runs/ of the checkout)")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on a Dask cluster (scheduler address, or 'local' for a LocalCluster of --jobs "
        "one-thread workers); needs the 'dask' extra",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the runs the study needs, how many the store has, and the CPU-hours it "
        "will take; train nothing",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


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
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set optimizer.lr=0.01 (repeatable)",
        )
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        return p

    experiment("train", "train the original (ungated) autoencoder")
    p = experiment("prune", "prune with the α schedule, starting from init_from / --original")
    p.add_argument("--original", help="checkpoint to start from (overrides init_from)")
    p = experiment("evaluate", "evaluate a checkpoint on the validation crops at its stored α")
    p.add_argument("--checkpoint", help="checkpoint (default: the run's checkpoints/last.pt)")
    p.add_argument("--alpha", type=float, help="evaluate at this α (needs --override-alpha)")
    p.add_argument("--override-alpha", action="store_true", help="allow an α other than stored")
    p.add_argument(
        "--split", choices=["val", "test"], default="val", help="held-out images (default val)"
    )
    p = experiment("shrink", "fold gates into the weights and cut pruned channels")
    p.add_argument("--checkpoint", help="gated checkpoint (default: the run's last.pt)")
    p.add_argument("--out", help="where to write the shrunk model (default: RUN/shrunk.pt)")
    _export_arguments(
        experiment(
            "export",
            "shrink a run at α = 0, export it (ONNX, torch.export, TorchScript) and verify the file",
        )
    )

    p = sub.add_parser("report", help="run the weekly report notebooks and export HTML/PDF")
    p.add_argument("params", help="weekly report YAML, e.g. params/week09.yaml")
    p.add_argument(
        "--force",
        action="store_true",
        help="rerun every stage and retrain every run, even if unchanged",
    )
    p = sub.add_parser(
        "compare",
        help="two weeks' runs side by side (reports/week09 reports/week10, or week09 week10)",
    )
    p.add_argument("weeks", nargs=2, metavar="WEEK", help="report folder, or its name in reports/")
    p.add_argument("--out", help="also write the table to this CSV file")
    _study_parser(sub)
    # delegated to its module's own parser (alphaprune.study.store.main)
    sub.add_parser("runs", add_help=False, help="the shared run store: runs list | runs gc")
    return parser


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format", choices=("onnx", "pt2", "torchscript"), default="onnx", help="default: onnx"
    )
    p.add_argument("--checkpoint", help="checkpoint to export (default: the run's last.pt)")
    p.add_argument("--out", help="the exported file (default: RUN/shrunk.onnx, .pt2, …)")
    p.add_argument(
        "--allow-alpha", action="store_true", help="export a model whose gates are not at α = 0"
    )
    p.add_argument("--static-batch", action="store_true", help="fix the batch size (default: any)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument(
        "--tolerance", type=float, default=1e-5, help="max rel. difference (default: 1e-5)"
    )


_DELEGATED = ("runs",)


def _delegate(argv: Sequence[str]) -> int:
    from alphaprune.study.store import main as store_main

    return store_main(argv[1:])


def _run(args: argparse.Namespace) -> int:
    if args.command == "study":
        from alphaprune.study.command import run_command

        return run_command(args)
    if args.command == "report":
        from alphaprune.report.runner import run_report

        run_report(args.params, force=args.force)  # its last line names the report's files
        return 0
    if args.command == "compare":
        return _compare(args)

    from alphaprune.engine.config import load_config
    from alphaprune.engine.factories import trust_factory

    cfg = load_config(args.params, args.overrides)
    trust_factory(cfg.model.factory)  # the user's own: checkpoints naming it may be loaded
    progress = not args.no_progress
    if args.command == "train":
        from alphaprune.engine.train import train_baseline

        result = train_baseline(cfg, progress=progress)
        print(f"baseline done: {result.checkpoint}")
    elif args.command == "prune":
        from alphaprune.engine.train import prune

        result = prune(cfg, original=args.original, progress=progress)
        print(f"pruning done: {result.checkpoint}")
    elif args.command == "evaluate":
        from alphaprune.engine.checkpoint import last_path, load_checkpoint
        from alphaprune.engine.evaluate import evaluate
        from alphaprune.engine.train import make_datasets, require_finished

        path = Path(args.checkpoint) if args.checkpoint else last_path(cfg.run_dir)
        if args.alpha is not None and not math.isfinite(args.alpha):
            raise UserError(f"--alpha must be a finite number, got {args.alpha}")
        require_finished(path, "evaluate")  # a diverged run's last.pt is not its result
        loaded = load_checkpoint(path, alpha=args.alpha, override_alpha=args.override_alpha)
        held_out = make_datasets(cfg, held_out=args.split)[1]
        scores = evaluate(loaded.model, held_out, batch_size=cfg.data.batch_size, interval=True)
        # too few images for an interval over images: no interval (null), and the note says why
        scores = {k: None if _ci_key(k) and math.isnan(v) else v for k, v in scores.items()}
        print(_json({"checkpoint": str(path), "alpha": loaded.evaluated_alpha, **scores}))
    elif args.command == "shrink":
        from alphaprune.engine.checkpoint import last_path, shrink_checkpoint
        from alphaprune.engine.train import require_finished

        path = Path(args.checkpoint) if args.checkpoint else last_path(cfg.run_dir)
        out = Path(args.out) if args.out else cfg.run_dir / "shrunk.pt"
        require_finished(path, "shrink")
        summary = shrink_checkpoint(path, out, image_size=cfg.data.crop)
        print(_json(summary))
    elif args.command == "export":
        _export(cfg, args)
    return 0


def _compare(args: argparse.Namespace) -> int:
    """``compare``: two weeks' Table 1 side by side, printed (and written to ``--out``)."""
    import pandas as pd

    from alphaprune.atomic import atomic_write_text
    from alphaprune.report.index import compare_weeks

    table = compare_weeks(*args.weeks)
    shown = ["run"] + [
        c for c in table.columns if c.split(":")[-1] in ("label", "val_psnr") or c.startswith("Δ")
    ]
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table[shown].to_string(index=False, na_rep="—", float_format=lambda v: f"{v:.2f}"))
    if args.out:
        atomic_write_text(Path(args.out), table.to_csv(index=False))
        print(f"written to {args.out}")
    return 0


def _export(cfg, args: argparse.Namespace) -> None:
    """``export``: the run's checkpoint, shrunk at α = 0, exported and verified; its record."""
    from alphaprune.engine.checkpoint import last_path, load_checkpoint
    from alphaprune.engine.export import FORMATS, export
    from alphaprune.engine.models import example_input
    from alphaprune.engine.train import require_finished

    if not math.isfinite(args.tolerance) or args.tolerance <= 0:
        raise UserError(f"--tolerance must be a number > 0, got {args.tolerance}")
    path = Path(args.checkpoint) if args.checkpoint else last_path(cfg.run_dir)
    require_finished(path, "export")
    model = load_checkpoint(path, verbose=False)
    out = Path(args.out) if args.out else cfg.run_dir / f"shrunk{FORMATS[args.format]}"
    result = export(
        model,
        example_input(cfg.model.model_dump(), cfg.data.crop),
        out,
        format=args.format,
        dynamic_batch=not args.static_batch,
        opset=args.opset,
        allow_alpha=args.allow_alpha,
        tolerance=args.tolerance,
        source=str(path),
        fingerprint=_fingerprint(path),
        verbose=False,
    )
    check = result.record["verification"]
    print(
        _json(
            {
                "source": str(path),
                "out": str(result.path),
                "record": str(result.record_path),
                "format": args.format,
                "alpha": result.record["alpha"],
                "params": result.record["params"],
                "flops": result.record["flops"],
                "verified_with": check["runtime"],
                "max_rel_diff": check["max_rel_diff"],
            }
        )
    )


def _fingerprint(checkpoint: Path) -> str | None:
    """The run store's fingerprint of the run ``checkpoint`` belongs to, when it has one."""
    info = checkpoint.parent.parent / "run.json"
    try:
        return json.loads(info.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    delegated = bool(argv) and argv[0] in _DELEGATED
    args = None if delegated else _parser().parse_args(argv)
    if args is not None:
        args.argv = argv  # what the study records as its command
    try:
        return _delegate(argv) if delegated else _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except AlphapruneError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:  # an optional dependency of this command is missing
        extra = _EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        command = argv[0] if argv else "alphaprune"
        print(
            f"error: '{command}' needs the package '{exc.name}', which the core install leaves "
            f"out: pip install 'alphaprune[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except OSError as exc:  # a file or folder the user named: blocked, not writable, disk full
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    # anything else is a bug: it leaves with its traceback


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
