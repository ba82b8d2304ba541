"""Notes with live numbers (alphaprune.report.prose): references, their checks, their rendering,
the run status of Table 1, and the CI report's prose against its own tables."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from alphaprune.errors import ReportParamsError
from alphaprune.report.params import load_report_params, report_params_from_dict
from alphaprune.report.prose import (
    NotApplicable,
    Tables,
    Value,
    check_notes,
    reference_tree,
    references,
    render,
    render_notes,
)
from alphaprune.report.runs import EXPLODED_FACTOR, exploded_at, start_train_loss
from alphaprune.report.schema import RunStart

ROOT = Path(__file__).resolve().parents[1]
CI_PARAMS = ROOT / "params" / "ci.yaml"
WEEKS = ["week09.yaml", "week10.yaml"]


def ci_data() -> dict:
    return yaml.safe_load(CI_PARAMS.read_text(encoding="utf-8"))


def params_with(notes: dict, experiments: list | None = None):
    data = ci_data()
    data["notes"] = notes
    if experiments is not None:
        data["experiments"] = experiments
    return report_params_from_dict(data, source="week.yaml")


def _runs_row(run, label, psnr, loss, status="finished", **extra):
    return {
        "run": run,
        "label": label,
        "schedule": "—" if run == "baseline" else "step α 1 → 0.1 → 0",
        "lr": 0.001,
        "weight_decay": 0.0,
        "epochs": 3,
        "keep": float("nan") if run == "baseline" else 0.5,
        "final_alpha": float("nan") if run == "baseline" else 0.0,
        "train_loss": loss,
        "train_loss_start": loss / 2,
        "train_loss_peak": loss,
        "val_loss": loss,
        "val_psnr": psnr,
        "val_ssim": 0.9,
        "status": status,
        **extra,
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A report folder with the tables the stages write (numbers of week 9)."""
    tables = tmp_path / "tables"
    tables.mkdir()
    runs = [
        _runs_row("baseline", "baseline (original)", 29.70, 0.0011),
        _runs_row("decay", "α: 1 → 0.1 → 0", 23.93, 0.00405),
        _runs_row("alpha0_lr0.01", "α 0, lr 0.01", 12.27, 0.0547),
        _runs_row(
            "restart", "restart from α 0.1", float("nan"), float("nan"), "diverged at epoch 2"
        ),
    ]
    pd.DataFrame(runs).to_csv(tables / "experiments.csv", index=False)
    weights = [
        ("decay", "encoder.0", 0.61),
        ("decay", "encoder.2", 1.51),
        ("alpha0_lr0.01", "encoder.0", 3.0),
        ("restart", "encoder.0", float("inf")),
    ]
    pd.DataFrame(weights, columns=["run", "layer", "l2_ratio"]).to_csv(
        tables / "weights.csv", index=False
    )
    pd.DataFrame(
        {
            "model": ["original", "pruned (α = 0, masked)", "shrunk"],
            "params": [1000, 1000, 400],
            "flops": [5000, 5000, 2000],
            "params_ratio": [1.0, 1.0, 0.4],
            "flops_ratio": [1.0, 1.0, 0.4],
        }
    ).to_csv(tables / "shrink.csv", index=False)
    pd.DataFrame([{"max_abs_diff": 3e-7, "tolerance": 1e-4, "passed": True}]).to_csv(
        tables / "shrink_check.csv", index=False
    )
    pd.DataFrame(
        {
            "model": ["original", "masked", "shrunk"],
            "latency_ms_median": [10.0, 10.1, 5.0],
            "latency_ms_p10": [9.5, 9.6, 4.8],
            "latency_ms_p90": [10.5, 10.6, 5.2],
            "throughput_img_s": [400.0, 396.0, 800.0],
            "device_label": ["CPU: test"] * 3,
            "batch_size": [4] * 3,
            "image_size": [32] * 3,
        }
    ).to_csv(tables / "benchmark.csv", index=False)
    pd.DataFrame(
        {
            "panel": ["a", "b", "c", "d"],
            "run": ["astronaut", "original", "restart", "restart"],
            "psnr": [None, 30.1, 25.2, 25.2],
            "ssim": [None, 0.95, 0.9, 0.9],
            "input": ["astronaut, 64×64"] * 4,
        }
    ).to_csv(tables / "reconstruction.csv", index=False)
    return tmp_path


def show(text: str, folder: Path, **notes) -> str:
    params = params_with({"progress": text, **notes})
    return render_notes(params, folder).progress


# --- resolving --------------------------------------------------------------------------------


def test_known_references_render_from_the_tables(folder: Path) -> None:
    assert show("{run.decay.psnr:.2f} dB", folder) == "23.93 dB"
    assert show("{run.alpha0_lr0.01.psnr:.1f}", folder) == "12.3"  # a run name with a dot
    assert show("{run.decay.epochs} epochs", folder) == "3 epochs"  # whole numbers stay whole
    assert show("{run.alpha0_lr0.01.lr:g}", folder) == "0.001"
    assert show("{run.decay.status}", folder) == "finished"
    assert show("{run.alpha0_lr0.01.psnr_vs.decay:+.2f}", folder) == "-11.66"
    assert show("{run.alpha0_lr0.01.psnr_gap.decay:.2f}", folder) == "11.66"
    assert show("{run.alpha0_lr0.01.psnr_cmp.decay}", folder) == "lower than"
    assert show("{run.decay.psnr_cmp.alpha0_lr0.01}", folder) == "higher than"
    assert show("{run.alpha0_lr0.01.loss_factor.decay:.1f}×", folder) == "13.5×"
    assert show("{run.decay.loss_factor.alpha0_lr0.01:.1f}×", folder) == "13.5×"
    assert show("{run.decay.loss_cmp.alpha0_lr0.01}", folder) == "lower than"
    assert show("{run.alpha0_lr0.01.loss_ratio.decay:.3g}", folder) == "13.5"
    assert show("{best.label} at {best.psnr:.2f}", folder) == "α: 1 → 0.1 → 0 at 23.93"
    assert show("{weights.decay.min_ratio:.2f}–{weights.decay.max_ratio:.2f}", folder) == (
        "0.61–1.51"
    )
    assert show("{weights.decay.max_layer}", folder) == r"encoder.2"
    assert show("{shrink.params_ratio:.3f} {shrink.params:,d}", folder) == "0.400 400"
    assert show("{shrink.within} {shrink.tolerance:g}", folder) == "within 0.0001"
    assert show("{gpu.shrunk.speed} {gpu.shrunk.speedup:.1f}×", folder) == "faster than 2.0×"
    assert show("{gpu.masked.speed}", folder) == "within the timing noise of"  # ranges overlap
    assert show("{gpu.device}", folder) == "CPU: test"
    assert show("{recon.image} {recon.size:d} {recon.pruned.psnr:.1f}", folder) == (
        "astronaut 64 25.2"
    )
    assert "random initialisation" in show("{model.encoder}", folder)
    assert show("{model.layer}, {{literal}}", folder) == r"relu2\_1, {literal}"  # Markdown-escaped


def test_words_are_escaped_for_markdown(folder: Path) -> None:
    runs = pd.read_csv(folder / "tables" / "experiments.csv")
    runs.loc[1, "label"] = "*bold* [link]"
    runs.to_csv(folder / "tables" / "experiments.csv", index=False)
    assert show("{run.decay.label}", folder) == r"\*bold\* \[link\]"


def test_non_finite_values_never_read_nan(folder: Path) -> None:
    out = show(
        "{run.restart.psnr:.2f}; {run.restart.psnr_vs.decay:+.2f}; {run.restart.psnr_cmp.decay}; "
        "{weights.restart.max_ratio:.2f}; {run.baseline.final_alpha:g}",
        folder,
    )
    assert out == (
        "n/a (diverged at epoch 2); n/a (restart: diverged at epoch 2); "
        "n/a (restart: diverged at epoch 2); n/a (not finite); n/a"
    )
    assert "nan" not in out.lower().replace("n/a", "")


def test_longest_run_name_wins_and_dots_in_names() -> None:
    tree = {
        "run": {
            "lr0": {"psnr": Value("number", lambda t: 1.0)},
            "lr0.01": {"psnr": Value("number", lambda t: 2.0)},
        }
    }
    assert render("{run.lr0.psnr:g} {run.lr0.01.psnr:g}", tree, Tables(".")) == "1 2"


# --- refusing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{run.alpha0_lr0.2.psnr}", "no 'alpha0_lr0.2.psnr' under 'run' (known: alpha0_lr0.01, "),
        ("{run.__class__}", "no '__class__' under 'run'"),
        ("{0.__init__}", "no '0.__init__' at the top (known: best, gpu, model, recon, run,"),
        ("{run.decay.psnr.real}", "'run.decay.psnr' is a value, it has no 'real'"),
        ("{run.decay.psnr_vs}", "'run.decay.psnr_vs' needs one more name"),
        ("{run.decay.psnr_vs.decay}", "no 'decay' under 'run.decay.psnr_vs'"),
        ("{run.decay.__dict__.x}", "no '__dict__.x' under 'run.decay'"),
    ],
)
def test_unknown_references_are_one_line_errors_naming_them(text: str, says: str) -> None:
    with pytest.raises(ReportParamsError) as info:
        params_with({"weights": f"before {text} after"})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("week.yaml: notes.weights: ")
    assert says in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{run.decay.psnr!r}", "is not a reference"),
        ("{run.decay.psnr!s:.2f}", "is not a reference"),
        ("{run.decay.psnr[0]}", "is not a reference"),
        ("{run[decay].psnr}", "is not a reference"),
        ("{run.decay.psnr:{run.decay.epochs}}", "is not a reference"),
        ("{}", "is not a reference"),
        ("{ run.decay.psnr }", "is not a reference"),
        ("{run.decay.psnr:>999999999}", "is not a number format"),
        ("{run.decay.psnr:.100f}", "is not a number format"),
        ("{run.decay.psnr:x}", "is not a number format"),
        ("{run.decay.psnr:s}", "is not a number format"),
        ("{run.decay.label:.2f}", "is a word, not a number; drop ':.2f'"),
        ("{run.decay.status:>20}", "is a word, not a number"),
        ("a { b", "expected '}'"),
        ("a } b", "Single '}'"),
    ],
)
def test_tricks_and_malformed_references_are_refused(text: str, says: str) -> None:
    with pytest.raises(ReportParamsError, match=re.escape(says)) as info:
        params_with({"progress": text})
    assert "notes.progress" in str(info.value)


def test_rendering_checks_too(folder: Path) -> None:
    """A tree and text given directly (not validated with params) are checked the same way."""
    tree = reference_tree(params_with({}))
    with pytest.raises(ReportParamsError, match=r"x: unknown reference \{run\.nope\.psnr\}"):
        render("{run.nope.psnr}", tree, Tables(folder), "x")
    with pytest.raises(ReportParamsError, match="is a word"):
        render("{run.decay.label:.1f}", tree, Tables(folder), "x")


def test_a_missing_table_is_named(tmp_path: Path) -> None:
    params = params_with({"gpu": "{gpu.shrunk.ms:.1f}"})
    with pytest.raises(ReportParamsError, match="benchmark.csv"):
        render_notes(params, tmp_path)


def test_references_split_literals_and_fields() -> None:
    pieces = list(references("a {run.x.psnr:.2f} b {{c}}", "w"))
    assert pieces[0] == ("a ", "run.x.psnr", ".2f")
    assert "".join(p[0] for p in pieces) == "a  b {c}"


def test_weights_of_a_run_from_a_shrunk_start_are_not_offered() -> None:
    data = ci_data()
    data["experiments"][2]["start"] = {"run": "decay", "shrink": True}
    data["notes"] = {"weights": "{weights.restart.max_ratio}"}
    with pytest.raises(ReportParamsError, match=r"no 'restart.max_ratio' under 'weights'"):
        report_params_from_dict(data, source="w.yaml")


def test_params_validation_catches_an_unknown_reference_in_a_file(tmp_path: Path) -> None:
    data = ci_data()
    data["notes"]["shrink"] = "the model has {shrink.param_ratio:.3f} of the parameters"
    path = tmp_path / "week.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ReportParamsError) as info:
        load_report_params(path)
    message = str(info.value)
    assert f"{path}: notes.shrink: unknown reference {{shrink.param_ratio}}" in message
    assert "known: " in message and "params_ratio" in message


# --- the committed weeks --------------------------------------------------------------------------

#: Numbers a note may state in its own words: concepts (α = 0, L1, VGG-19), not measurements.
_ALLOWED = re.compile(r"α\s*=\s*[01]\b|\bL[12]\b|VGG-19|Table\s+\d|Figure\s+\d|^\s*\d\.\s", re.M)


@pytest.mark.parametrize("name", WEEKS)
def test_week_notes_state_no_number_by_hand(name: str) -> None:
    """Every number of the week's prose is a reference to its tables: the literal text between
    references holds only the allowed concept numbers (α = 0, L1, Table 1, list numbers)."""
    params = load_report_params(ROOT / "params" / name)
    check_notes(params)
    for key, text in params.notes.model_dump().items():
        literal = "".join(piece for piece, _, _ in references(text, key))
        left = _ALLOWED.sub("", literal)
        digit = re.search(r"\d", left)
        assert digit is None, (
            f"{name}: notes.{key}: a number by hand: …{left[digit.start() - 40 : digit.end() + 20]!r}…"
        )


def test_week_labels_say_what_the_run_is() -> None:
    params = load_report_params(ROOT / "params" / "week09.yaml")
    decay = params.experiment("decay")
    assert "week" not in decay.label  # it is a run of this week, not of weeks 1–8


# --- status of a run --------------------------------------------------------------------------


def _metrics(losses, alphas=None) -> pd.DataFrame:
    alphas = alphas or [0.0] * len(losses)
    return pd.DataFrame({"epoch": range(len(losses)), "alpha": alphas, "train_loss": losses})


def test_exploded_at_against_the_start_and_the_first_epoch() -> None:
    assert exploded_at(_metrics([0.01, 0.005, 0.004])) == (None, 0.01)
    assert exploded_at(_metrics([0.01, 0.01 * EXPLODED_FACTOR * 2, 3.0])) == (1, 0.01)
    # exploded in its first epoch: only the loss it started from tells
    assert exploded_at(_metrics([4e10, 4e10]))[0] is None
    assert exploded_at(_metrics([4e10, 4e10]), start_loss=0.002) == (0, 0.002)
    # a one-shot cut may cost 20 dB (100× the loss): not an explosion
    assert exploded_at(_metrics([0.2, 0.1]), start_loss=0.002) == (None, 0.002)
    assert exploded_at(_metrics([]), start_loss=0.002) == (None, 0.002)


def test_start_train_loss_reads_the_milestone_epoch() -> None:
    class Result:
        metrics = _metrics([0.5, 0.2, 0.1, 0.3], alphas=[1.0, 0.1, 0.1, 0.0])

    results = {"decay": Result()}
    assert start_train_loss(results, RunStart(run="decay", alpha=0.1)) == 0.1
    assert start_train_loss(results, RunStart(run="decay")) == 0.3
    assert start_train_loss(results, RunStart(run="decay", alpha=0.5)) is None
    assert start_train_loss(results, RunStart(run="other")) is None


def test_not_applicable_reads_n_a() -> None:
    assert str(NotApplicable()) == "n/a" and str(NotApplicable("why")) == "n/a (why)"


# --- the CI report ------------------------------------------------------------------------------


@pytest.mark.slow  # builds the CI report (session fixture, ~1.5 min)
def test_ci_report_prose_equals_its_tables(ci_report: Path) -> None:
    """Every reference in the CI notes, as the report shows it, agrees with the report's own
    tables and captions (read from the HTML, not from the code that filled the prose in)."""
    from prose_check import Report, check_report

    checked = check_report(CI_PARAMS, ci_report / "report.html")
    params = load_report_params(CI_PARAMS)
    count = sum(
        1
        for text in params.notes.model_dump().values()
        for _, path, _ in references(text, "notes")
        if path is not None
    )
    assert len(checked) == count >= 25
    text = Report.read(ci_report / "report.html").text  # the prose, outside tables and figures
    assert "{run." not in text and "nan" not in text.split()
    runs = pd.read_csv(ci_report / "tables" / "experiments.csv")
    statuses = set(runs["status"])
    assert all(
        re.fullmatch(r"finished|diverged at epoch \d+|exploded at epoch \d+ \(train loss \S+\)", s)
        for s in statuses
    )
    if statuses == {"finished"}:
        assert "n/a" not in text  # nothing diverged: every value is a number
    assert "VGG-19 trained here from random initialisation" in text  # computed, not a note


def test_summary_table_status_of_each_kind_of_run(tmp_path: Path) -> None:
    """Finished, exploded (finite, ×1e13 the start) and diverged at epoch 0 (no finite epoch)."""
    from alphaprune.engine.config import config_from_dict
    from alphaprune.engine.train import RunResult
    from alphaprune.report.runs import summary_table
    from alphaprune.report.schema import Experiment

    def result(name, losses, diverged=None):
        metrics = _metrics(losses).assign(
            lr=0.1, val_loss=losses, val_psnr=20.0, val_ssim=0.5, seconds=1.0, status="ok"
        )
        cfg = config_from_dict({"name": name, "epochs": max(len(losses), 1)})
        return RunResult(tmp_path, tmp_path / "last.pt", metrics, cfg, diverged_at=diverged)

    results = {
        "baseline": result("baseline", [0.05, 0.003]),
        "ok": result("ok", [0.004, 0.003]),
        "wild": result("wild", [4e10, 3e10]),
        "dead": result("dead", [], diverged=0),
    }
    experiments = [Experiment(name=n, start={"run": "baseline"}) for n in ("ok", "wild", "dead")]
    table = summary_table(results, {"wild": "lr 0.1"}, experiments).set_index("run")
    assert table["status"].to_dict() == {
        "baseline": "finished",
        "ok": "finished",
        "wild": "exploded at epoch 0 (train loss 4e+10)",  # .3g of 4e10
        "dead": "diverged at epoch 0",
    }
    assert table.loc["wild", "label"] == "lr 0.1" and table.loc["wild", "train_loss"] == 3e10
    assert table.loc["wild", "train_loss_start"] == 0.003  # the baseline's last epoch
    assert table.loc["wild", "train_loss_peak"] == 4e10
    assert table.loc["dead", ["val_psnr", "train_loss", "train_loss_peak"]].isna().all()
    # without the starts, an explosion in the first epoch is not seen
    assert summary_table(results).set_index("run").loc["wild", "status"] == "finished"
