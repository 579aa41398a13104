"""A readable table of a GeneratorReport for the terminal (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.evaluation.metrics import GeneratorReport


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def print_report(
    report: GeneratorReport,
    failures: list[str],
    gate: dict[str, Any],
    console: Console | None = None,
) -> None:
    """The report as a table; ``gate`` holds the thresholds it was judged by."""
    console = console or Console()
    table = Table(title=f"generator evaluation ({report.dataset}, {report.num_samples} samples)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("reference", justify="right")
    table.add_row(
        "conditional accuracy", _pct(report.accuracy), f">= {_pct(gate['min_accuracy'])} gate"
    )
    per_class = report.per_class_accuracy
    if per_class is not None:
        worst = min(range(len(per_class)), key=per_class.__getitem__)
        table.add_row("worst class accuracy", f"{_pct(per_class[worst])} (class {worst})", "")
    table.add_row(
        "Frechet distance",
        f"{report.fd:.2f}",
        f"<= {gate['max_fd']:.2f} gate; {report.fd_floor:.2f} real train vs test",
    )
    table.add_row(
        "inception-style score",
        f"{report.inception_score:.2f}",
        f"{report.real_inception_score:.2f} real test",
    )
    table.add_row(
        "class entropy (coverage)", f"{report.class_entropy:.4f}", "1 = every class equally"
    )
    if report.min_diversity_ratio is not None:
        table.add_row(
            "within-class diversity, worst",
            f"{report.min_diversity_ratio:.3f}",
            "1 = as varied as real",
        )
    table.add_row(
        "train on synthetic, test on real",
        _pct(report.tstr_accuracy) if report.tstr_count else "skipped",
        f"{report.tstr_count} generated",
    )
    second = report.independent
    if second is not None:
        table.add_row(
            "conditional accuracy, independent classifier",
            _pct(second.accuracy),
            f"{_pct(second.test_accuracy)} on real test ({second.method})",
        )
    trained_in = report.precision.get("classifier", "?")
    table.add_row(
        "classifier accuracy (real test)",
        _pct(report.classifier_test_accuracy),
        f"the gate's basis (trained in {trained_in})",
    )
    console.print(table)
    if failures:
        console.print("[bold red]quality gate: FAIL[/] " + "; ".join(failures))
    else:
        console.print("[bold green]quality gate: PASS[/]")
