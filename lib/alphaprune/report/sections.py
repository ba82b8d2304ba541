"""The sections of the weekly report (``notebooks/06_report.ipynb``), built from the stages'
``tables/`` and ``figures/`` (named in :mod:`~alphaprune.report.outputs`), under the headings of
:mod:`~alphaprune.report.headings`, with the params file's prose.

Each method returns the display objects of one section (HTML / Markdown); the notebook shows
them with ``display(*report.section())``. Captions say where every number comes from (which
input a PSNR is measured on, which device a time was measured on).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd

from alphaprune.engine.config import config_from_dict
from alphaprune.report import headings
from alphaprune.report.headings import Heading
from alphaprune.report.html import ReportBuilder, alpha_text
from alphaprune.report.notebook import StageContext
from alphaprune.report.outputs import OUTPUTS, Figure, Output, Record, Registry, Table, draw
from alphaprune.report.params import BASELINE
from alphaprune.report.prose import encoder_text, render_notes
from alphaprune.report.runs import EXPLODED_FACTOR
from alphaprune.report.tables import weight_ranges

__all__ = ["Report", "NOISE_NOTE", "masked_size", "timing_flags"]


#: Number formats and headers of Table 1 (the runs of the week).
_RUN_FORMATS = {
    "lr": "g",
    "weight_decay": "g",
    "keep": "g",
    "final_alpha": "g",
    "train_loss": ".3g",
    "val_loss": ".3g",
    "val_psnr": ".2f",
    "val_ssim": ".3f",
}
_RUN_COLUMNS = {
    "label": "run",
    "schedule": "α schedule",
    "lr": "base lr",
    "lr_decay": "lr decay",
    "weight_decay": "weight decay",
    "epochs": "epochs",
    "keep": "keep",
    "final_alpha": "final α",
    "train_loss": "train loss",
    "val_loss": "val. loss",
    "val_psnr": "PSNR (dB)",
    "val_ssim": "SSIM",
    "status": "status",
}

#: Number formats and headers of the study's summary table.
_STUDY_FORMATS = {
    "mean": ".2f",
    "ci_low": ".2f",
    "ci_high": ".2f",
    "diff_mean": "+.2f",
    "diff_std": ".2f",
    "diff_ci_low": "+.2f",
    "diff_ci_high": "+.2f",
    "p_holm": ".2g",
    "tost_p_holm": ".2g",
    "flops_ratio": ".2f",
    "latency_ms": ".2f",
}
_STUDY_COLUMNS = {
    "budget": "budget",
    "label": "arm",
    "n": "n",
    "mean": "test PSNR (dB)",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "diff_mean": "Δ (dB)",
    "diff_std": "sd Δ",
    "diff_ci_low": "Δ CI low",
    "diff_ci_high": "Δ CI high",
    "p_holm": "p (Holm)",
    "tost_p_holm": "TOST p (Holm)",
    "verdict": "verdict",
    "flops_ratio": "FLOPs ratio",
    "latency_ms": "CPU ms",
}


def _above_original_flag(runs: Any) -> str:
    """A bold warning naming pruned models that score above their own original, else ''."""
    flagged = runs[runs["above_original"].astype(bool) & runs["kind"].isin(["schedule", "restart"])]
    if not len(flagged):
        return ""
    which = ", ".join(
        f"{r.label} at {r.budget}, baseline {r.baseline} seed {r.seed} ({r.vs_original:+.2f} dB)"
        for r in flagged.itertuples()
    )
    return (
        f"**Flag: {len(flagged)} pruned model(s) score above their own original (beyond the "
        f"evaluation interval over images, or on every test image where there is none): {which}. "
        "Compare with the unpruned model fine-tuned for the same budget.**"
    )


def _provenance(record: Mapping[str, Any]) -> str:
    """One line: the encoder, the test images, and what computed the numbers."""
    env = record.get("environment") or {}
    commit = (env.get("commit") or "unknown")[:10] + (
        " (uncommitted changes)" if env.get("dirty") else ""
    )
    latency = (env.get("latency") or {}).get("measured", "")
    return (
        f"Encoder: {record.get('encoder')}. Test images: {', '.join(record.get('test_images') or [])}. "
        f"Computed at commit {commit}, library {str(env.get('library_sha256'))[:10]}, torch "
        f"{env.get('torch')}, {env.get('threads_per_run')} thread(s) per run on {env.get('device')} "
        f"({env.get('cpu')}); {record.get('cpu_hours', 0):.2f} CPU-hours of training; CPU latency "
        f"measured on {latency}. Reproduce: `{record.get('command') or 'python -m alphaprune report'}`."
    )


class Report:
    """The report of one week; ``stage`` is the set-up of ``06_report`` (folder entered).

    ``registry``: the outputs whose drawn figures (``plot`` given) each section shows at its end.
    """

    def __init__(self, stage: StageContext, registry: Registry = OUTPUTS) -> None:
        self.stage = stage
        self.registry = registry
        self.params = stage.params
        # references such as {run.decay.psnr:.2f} filled in from this report's tables
        self.notes = render_notes(stage.params, stage.folder)
        self.builder = ReportBuilder()

    def _read(self, table: Output) -> pd.DataFrame:
        try:
            return pd.read_csv(self.stage.folder / table.path)
        except pd.errors.EmptyDataError:  # e.g. no run comparable channel by channel
            return pd.DataFrame()

    def _figure(self, figure: Output, caption: str, width: str = "100%"):
        return self.builder.figure(self.stage.folder / figure.path, caption, width)

    def _section(self, heading: Heading):
        return self.builder.section(heading.text, level=heading.level)

    def _drawn(self, heading: Heading) -> list[Any]:
        """The registry's drawn figures under ``heading`` (those whose table exists), numbered."""
        shown = []
        for figure in self.registry.drawn_under(heading):
            path = draw(figure, self.stage.folder)
            if path is not None:
                shown.append(self.builder.figure(path, figure.caption))
        return shown

    def _validation_input(self) -> str:
        """What the validation metrics of Table 1 are measured on, from the baseline's config."""
        data = config_from_dict(self.params.run_config(BASELINE)).data
        images = ", ".join(data.val_images) or "a seeded fraction of the images"
        if data.val_protocol == "grid":
            return (
                f"PSNR of each whole validation image ({images}: {data.crop}×{data.crop} tiles "
                "covering every pixel, each pixel once), averaged over the images"
            )
        crops = "crop" if data.val_crops == 1 else "crops"
        return (
            f"PSNR over the pixels of {data.val_crops} fixed {data.crop}×{data.crop} {crops} of "
            f"each validation image ({images}), averaged over the images"
        )

    def _model_text(self) -> str:
        """What the original model is: its encoder's start (ImageNet or random) and depth."""
        model = config_from_dict(self.params.run_config(BASELINE)).model
        depth = f"encoder up to {model.layer}: " if not model.factory else ""
        return f"{depth}{encoder_text(self.params)}"

    def title(self) -> list[Any]:
        """The title and byline: the author, and the params' ``date`` or else the day the report
        was assembled (a report always says when it was made)."""
        date = self.params.date or f"built {dt.date.today().isoformat()}"
        byline = " · ".join(t for t in (self.params.author, date) if t)
        return [self.builder.title(self.params.report_title, byline)]

    def progress(self) -> list[Any]:
        """1. Weekly progress: prose, Table 1 (runs) and Figure 1 (training curves)."""
        b = self.builder
        table = b.table(
            self._read(Table.EXPERIMENTS),
            "Runs of the week: settings, training loss of the last epoch and validation metrics "
            f"after it ({self._validation_input()}); keep: fraction of channels kept. Diverged: "
            "a loss became inf/NaN, the run stopped. Exploded: the training loss rose above "
            f"{EXPLODED_FACTOR:,.0f}× the loss the run started from (to the peak given) but "
            "stayed finite, so the run went on: read its metrics with care.",
            formats=_RUN_FORMATS,
            columns=_RUN_COLUMNS,
            compact=True,
        )
        figure = self._figure(
            Figure.TRAINING,
            "Validation loss (a, log scale) and α of the pruned channels (b) per epoch of each "
            "run; the baseline has no α.",
            width="85%",  # with Table 1, fits the first page of a typical week
        )
        encoder = b.markdown(f"*Original model:* {self._model_text()}.")
        blocks = [
            b.group(self._section(headings.PROGRESS), b.markdown(self.notes.progress), encoder),
            table,
        ]
        has_check = self._has(Table.ORIGINAL_CHECK)
        check = self._read(Table.ORIGINAL_CHECK) if has_check else pd.DataFrame()
        if not check.empty and check["above_original"].astype(bool).any():
            above = check[check["above_original"].astype(bool)]
            which = ", ".join(
                f"{r.label} ({r.vs_original:+.2f} dB, 95 % CI [{r.vs_original_ci_low:+.2f}, "
                f"{r.vs_original_ci_high:+.2f}])"
                for r in above.itertuples()
            )
            blocks.append(
                b.markdown(
                    f"**Flag: {which} score(s) above the original model by more than the "
                    "evaluation's 95 % interval (bootstrap over the validation crops, paired per "
                    "crop). A pruned model should not beat its own original: check the original's "
                    "training and the validation set before reading Table 1.**"
                )
            )
        return [*blocks, figure, *self._drawn(headings.PROGRESS)]

    def _has(self, output: Output) -> bool:
        return (self.stage.folder / output.path).is_file()

    def weights(self) -> list[Any]:
        """1.1 Weights against the original model (Figure 2, when a run is comparable)."""
        b = self.builder
        weights = self._read(Table.WEIGHTS)
        figure = None
        if not weights.empty:
            ratios = pd.to_numeric(weights["l2_ratio"], errors="coerce")
            log = ratios.max() > 5 or ratios.min() < 0.2
            figure = self._figure(
                Figure.WEIGHTS,
                "L2 norm of the kept weights of each pruned model divided by that of the same "
                "channels in the original model, per layer (1 = unchanged"
                + ("; log scale, as one run is far from 1)." if log else ")."),
            )
        section = self._section(headings.WEIGHTS)
        if figure is None:
            return [
                b.group(section, b.markdown(self.notes.weights)),
                *self._drawn(headings.WEIGHTS),
            ]
        ranges = weight_ranges(weights)
        ranges.insert(0, "label", ranges["run"].map(lambda r: self.stage.labels.get(r, r)))
        table = b.table(
            ranges,
            "Ratio of the L2 norm of each pruned model's kept weights to that of the same "
            "channels in the original model: smallest and largest over its layers "
            f"(Figure {b.figures}), and the layers where they occur.",
            formats={"min_ratio": ".2f", "max_ratio": ".2f"},
            columns={
                "label": "run",
                "layers": "layers",
                "min_ratio": "smallest ratio",
                "min_layer": "layer (smallest)",
                "max_ratio": "largest ratio",
                "max_layer": "layer (largest)",
            },
        )
        return [
            b.group(section, b.markdown(self.notes.weights), table),
            figure,
            *self._drawn(headings.WEIGHTS),
        ]

    def reconstruction(self) -> list[Any]:
        """1.2 Reconstruction (one image through the original, pruned and shrunk models)."""
        b = self.builder
        recon = self._read(Table.RECONSTRUCTION).set_index("panel")
        settings = self.params.reconstruct
        alpha = recon.loc["c", "alpha"]
        caption = (
            f"(a) Original image, (b) output of the original model, (c) output of the pruned "
            f"model ({recon.loc['c', 'run']}; {alpha_text(alpha)}, read from its checkpoint), "
            f"(d) output of the shrunk model made from it. PSNR and SSIM under each panel are of "
            f"this one image ({settings.image}, whole image resized to "
            f"{settings.size}×{settings.size}), not the validation-crop means of Table 1."
        )
        section = self._section(headings.RECONSTRUCTION)
        return [
            b.group(
                section,
                b.markdown(self.notes.reconstruction),
                self._figure(Figure.RECONSTRUCTION, caption),
            ),
            *self._drawn(headings.RECONSTRUCTION),
        ]

    def shrink(self) -> list[Any]:
        """1.3 Multiplying the weights: the count table and the channels figure."""
        b = self.builder
        check = self._read(Table.SHRINK_CHECK).iloc[0]
        counts = self._read(Table.SHRINK)
        size = int(counts["image_size"][0])
        within = "within" if check["passed"] else "ABOVE"
        scale = float(check.get("output_scale", 1.0))
        relative = f" of outputs up to {scale:.2g}" if scale > 1 else ""  # tolerance × scale
        table = b.table(
            counts,
            f"Parameters and FLOPs (one {size}×{size} image) before and after multiplying the "
            f"gates into the weights. Largest difference between the outputs of the gated and "
            f"the shrunk model on random {size}×{size} images: {check['max_abs_diff']:.2g}"
            f"{relative} ({within} the tolerance {check['tolerance']:g}"
            f"{' of that scale' if relative else ''}).",
            formats={"params": ",", "flops": ",", "params_ratio": ".3f", "flops_ratio": ".3f"},
            columns={
                "model": "model",
                "params": "parameters",
                "flops": "FLOPs",
                "params_ratio": "params / original",
                "flops_ratio": "FLOPs / original",
            },
        )
        section = self._section(headings.SHRINK)
        figure = self._figure(
            Figure.SHRINK_CHANNELS,
            "Output channels of each convolution in the original and the shrunk model; the "
            "number over a shrunk bar is the fraction of its channels kept.",
            width="70%",
        )
        return [
            b.group(section, b.markdown(self.notes.shrink), table),
            figure,
            *self._drawn(headings.SHRINK),
        ]

    def study(self) -> list[Any]:
        """1.4 Study (only when the params have a ``study:`` section): the computed conclusion,
        the summary table per budget and arm with its verdicts, the figures and the seeds note."""
        if not getattr(self.params, "study", None):
            return []
        import json

        b = self.builder
        record = json.loads((self.stage.folder / Record.STUDY.path).read_text(encoding="utf-8"))
        summary = self._read(Table.STUDY_SUMMARY)
        runs = self._read(Table.STUDY)
        reference = summary.loc[summary["arm"] == record["reference"], "label"].iloc[0]
        parts: list[Any] = [
            self._section(headings.STUDY),
            b.markdown(f"**{record['conclusion']}** {record['seeds_note']}"),
            b.markdown(_provenance(record)),
        ]
        flag = _above_original_flag(runs)
        if flag:
            parts.append(b.markdown(flag))
        pct = f"{record['confidence']:.0%}".replace("%", " %")
        interval = runs["eval_interval"].iloc[0]
        caption = (
            f"Test PSNR (mean over {int(runs['n_test_images'].iloc[0])} whole test images) of "
            f"every arm at each budget, {int(runs['steps'].max())} optimiser steps at most, over "
            f"{record['baselines']} baseline(s) × {len(record['seeds'])} seed(s): mean and {pct} t "
            f"interval; the difference to {reference} paired by (baseline, seed) with its {pct} "
            f"interval, the paired t-test and the TOST (±{record['equivalence_db']:g} dB) p-values "
            f"Holm-adjusted over the arms of a budget, and the verdict. Evaluation interval over "
            f"images: {interval}. CPU ms: latency of the shrunk model (see above)."
        )
        parts.append(b.table(summary, caption, formats=_STUDY_FORMATS, columns=_STUDY_COLUMNS))
        figure = self._figure(
            Figure.STUDY,
            f"At {record['primary_budget']}: (a) test PSNR of every run (dots) and mean ± {pct} CI "
            f"(black) per arm; dashed: the original. (b) Difference to {reference} at the same "
            f"baseline and seed, mean ± {pct} CI; shaded: the equivalence margin.",
        )
        curves = self._figure(
            Figure.STUDY_CURVES,
            f"(a) Test PSNR against the FLOPs ratio of the shrunk model, mean ± {pct} CI per arm. "
            f"(b) Difference to {reference} at every budget; shaded: the equivalence margin.",
        )
        return [b.group(*parts), figure, curves, *self._drawn(headings.STUDY)]

    def gpu(self) -> list[Any]:
        """2. Addendum: the benchmark of this run, and measured GPU results when given."""
        b = self.builder
        bench = self._read(Table.BENCHMARK)
        label = bench["device_label"][0]
        on_cpu = bench["device_kind"][0] == "CPU"
        parts: list[Any] = [self._section(headings.GPU), b.markdown(self.notes.gpu)]
        if on_cpu:
            parts.append(
                b.markdown(
                    "**No GPU was available for this run: the figures below were measured on the "
                    f"CPU ({bench['device_name'][0]}), not on a GPU.**"
                )
            )
        side = int(bench["image_size"][0])
        exported = bench["model"].astype(str).str.startswith("exported").any()
        bench = bench.assign(timing=timing_flags(bench))
        noisy = bench["timing"].ne("").any()
        parts.append(
            b.table(
                bench,
                f"Time per batch of {int(bench['batch_size'][0])} images of {side}×{side} pixels "
                f"(median and 10th/90th percentiles of {int(bench['timed_batches'][0])} batches) on "
                f"{label}."
                + ("" if on_cpu else " GPU utilisation: mean of NVML samples.")
                + (f" {NOISE_NOTE}" if noisy else ""),
                formats=_BENCH_FORMATS,
                columns={
                    "model": "model",
                    "latency_ms_median": "ms / batch",
                    "latency_ms_p10": "p10",
                    "latency_ms_p90": "p90",
                    "throughput_img_s": "images / s",
                    "latency_ratio": "× time",
                    "flops_ratio": "× FLOPs",
                    "gpu_util_pct_mean": "GPU util. (%)",
                    "params": "parameters",
                    "timing": "timing",
                },
            )
        )
        blocks = [
            b.group(*parts),
            self._figure(
                Figure.BENCHMARK,
                f"Time per batch{'' if on_cpu else ' and GPU utilisation'} of the original, the "
                f"masked ({masked_size(bench)}) and the shrunk model"
                f"{_EXPORTED_NOTE if exported else ''}"
                f", on {label}.",
                width="80%" if on_cpu else "100%",
            ),
        ]
        if self._has(Table.BUDGET):
            blocks.append(self._budget(label))
        if self.params.gpu.results_csv and self._has(Table.GPU_RESULTS):
            blocks.append(self._gpu_results(self._read(Table.GPU_RESULTS)))
        return [*blocks, *self._drawn(headings.GPU)]

    def _budget(self, label: str):
        """The budget that chose the channels: predicted and measured ratios, and the figure."""
        b = self.builder
        budget = self._read(Table.BUDGET)
        row = budget.iloc[0]
        measured = row["measured_ratio_at_pruning"]
        when = (
            f"; measured when it chose: {measured:.3f} on {row['measured_at_pruning_on']}"
            if pd.notna(measured)
            else ""
        )
        text = (
            f"**Budget {row['budget']}**: the chosen channels were predicted to keep "
            f"{row['predicted_ratio']:.3f} of the cost{when}. Measured here on {label}: latency "
            f"ratio {row['latency_ratio_here']:.3f}, FLOPs ratio {row['flops_ratio']:.3f}."
        )
        parts = [b.markdown(text)]
        if self._has(Figure.LATENCY_FLOPS):
            parts.append(
                self._figure(
                    Figure.LATENCY_FLOPS,
                    f"Latency ratio against FLOPs ratio of each model, measured on {label}; the "
                    f"line is the budget's target, the markers its prediction and the ratio "
                    f"measured when it chose the channels (conditions above).",
                    width="60%",
                )
            )
        return b.group(*parts)

    def _gpu_results(self, table: pd.DataFrame):
        """Measured GPU results from another machine, labelled with device, date and file."""
        b = self.builder
        devices = ", ".join(dict.fromkeys(table["device_name"].astype(str)))
        dates = ", ".join(dict.fromkeys(table["measured_at"].astype(str)))
        source = table["source"][0]
        conditions = ""
        if {"batch_size", "image_size"} <= set(table.columns):
            side = int(table["image_size"][0])
            conditions = (
                f" Batches of {int(table['batch_size'][0])} images of {side}×{side} pixels."
            )
        on_gpu = "device" in table and table["device"].astype(str).str.startswith("cuda").all()
        kind = "GPU" if on_gpu else "not a GPU"
        caption = (
            f"Results measured on another machine ({kind}: {devices}; {dates}) by "
            f"benchmarks/gpu_check.sh, file {source}; not part of this run.{conditions}"
        )
        columns = {
            "layer": "layer",
            "keep": "keep",
            "target": "pruned",
            "model": "model",
            "latency_ms_median": "ms / batch",
            "throughput_img_s": "images / s",
            "gpu_util_pct_mean": "GPU util. (%)",
            "params": "parameters",
        }
        heading = headings.GPU_RESULTS
        section = b.section(f"{heading.text} ({devices})", level=heading.level)
        label = b.markdown(f"**Device: {devices} ({kind}). Measured: {dates}. File: `{source}`.**")
        return b.group(section, label, b.table(table, caption, _BENCH_FORMATS, columns))

    def plan(self) -> list[Any]:
        """3. Plan."""
        b = self.builder
        return [
            b.group(self._section(headings.PLAN), b.markdown(self.notes.plan)),
            *self._drawn(headings.PLAN),
        ]


NOISE_NOTE = (
    "A row marked *within noise* differs from the original by less than the timing spread: its "
    "p10–p90 range overlaps the original's, so this run cannot say it is faster or slower."
)


def timing_flags(bench: pd.DataFrame) -> list[str]:
    """'within noise' for each model whose p10–p90 latency range overlaps the original's (the
    difference it reports is smaller than its spread), else ''."""
    original = bench[bench["model"] == "original"]
    if original.empty:
        return [""] * len(bench)
    low, high = float(original["latency_ms_p10"].iloc[0]), float(original["latency_ms_p90"].iloc[0])
    return [
        "within noise" if model != "original" and p10 <= high and p90 >= low else ""
        for model, p10, p90 in zip(
            bench["model"], bench["latency_ms_p10"], bench["latency_ms_p90"], strict=True
        )
    ]


def masked_size(bench: pd.DataFrame) -> str:
    """How big the masked model is: full size, or — when an earlier stage already shrank part of
    it (week 10's decoder run on a shrunk encoder) — its share of the original's parameters."""
    masked = bench[bench["model"] == "masked"]
    if masked.empty or "params_ratio" not in masked or pd.isna(masked["params_ratio"].iloc[0]):
        return "α = 0, full size"
    ratio = float(masked["params_ratio"].iloc[0])
    if abs(ratio - 1.0) < 1e-9:
        return "α = 0, full size"
    return f"α = 0, not cut: {ratio:.3f} of the original's parameters, part of it already shrunk"


_EXPORTED_NOTE = (
    " (and the shrunk model exported to ONNX and run in onnxruntime; every ratio is to the"
    " original in eager torch)"
)

_BENCH_FORMATS = {
    "latency_ratio": ".3f",
    "flops_ratio": ".3f",
    "latency_ms_median": ".2f",
    "latency_ms_p10": ".2f",
    "latency_ms_p90": ".2f",
    "throughput_img_s": ".1f",
    "gpu_util_pct_mean": ".0f",
    "params": ",",
}
