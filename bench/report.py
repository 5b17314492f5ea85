"""What a benchmark run found, and its Markdown rendering."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    """One contender's median in one case."""

    contender: str
    seconds: float  # median wall-clock seconds of one timed run
    per: str  # what one run is: "step", "200 tokens", "first token"
    rate: float | None = None  # throughput, e.g. tokens per second
    rate_unit: str = ""
    limit: str = ""  # the run's fraction of a machine limit, ready to print
    spread: float = 0.0  # (max - min) / median of the timed runs
    note: str = ""


@dataclass(frozen=True)
class Check:
    """Something verified about a case's contenders (same tokens, same loss)."""

    text: str
    passed: bool


@dataclass(frozen=True)
class Target:
    """A goal of the issue, and whether this run met it."""

    text: str
    value: float
    goal: float
    higher_is_better: bool = True

    @property
    def met(self) -> bool:
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal


@dataclass
class CaseResult:
    title: str
    name: str = ""  # the case's name on the command line
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    skipped: str | None = None  # why the case was not measured

    def row(self, contender: str) -> Row | None:
        return next((r for r in self.rows if r.contender == contender), None)

    def ratio(self, contender: str, peer: str) -> float | None:
        """How many times the contender's rate is the peer's (time ratio when there is no rate)."""
        mine, theirs = self.row(contender), self.row(peer)
        if mine is None or theirs is None or mine.rate_unit != theirs.rate_unit:
            return None
        if mine.rate is not None and theirs.rate is not None:
            return mine.rate / theirs.rate if theirs.rate else None
        return theirs.seconds / mine.seconds if mine.seconds else None


PEERS = ("textbook", "transformers")


def render_markdown(header: list[str], results: list[CaseResult]) -> str:
    lines = list(header)
    lines += ["", "| Case | Contender | Median | Rate | × textbook | × transformers | Machine limit | Spread |",
              "|---|---|---:|---:|---:|---:|---|---:|"]
    for result in results:
        if result.skipped:
            lines.append(f"| {result.title} | — | not measured: {result.skipped} | | | | | |")
            continue
        for row in result.rows:
            ratios = [_ratio_cell(result, row.contender, peer) for peer in PEERS]
            rate = f"{_number(row.rate)} {row.rate_unit}" if row.rate is not None else ""
            contender = f"{row.contender} ({row.note})" if row.note else row.contender
            lines.append(f"| {result.title} | {contender} | {_duration(row.seconds)} / {row.per} | {rate} | "
                         f"{ratios[0]} | {ratios[1]} | {row.limit} | {row.spread:.0%} |")
    checks = [(r, c) for r in results for c in r.checks]
    if checks:
        lines += ["", "Checks:", ""]
        lines += [f"- {'ok' if c.passed else 'FAILED'}: {r.title}: {c.text}" for r, c in checks]
    targets = [(r, t) for r in results for t in r.targets]
    if targets:
        lines += ["", "Targets:", ""]
        for result, target in targets:
            sign = "≥" if target.higher_is_better else "≤"
            lines.append(f"- {'met' if target.met else 'NOT met'}: {result.title}: {target.text} = "
                         f"{_number(target.value)} (goal {sign} {_number(target.goal)})")
    return "\n".join(lines) + "\n"


def _ratio_cell(result: CaseResult, contender: str, peer: str) -> str:
    if contender == peer:
        return "1.00"
    ratio = result.ratio(contender, peer)
    return f"{ratio:.2f}" if ratio is not None else ""


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
