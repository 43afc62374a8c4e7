"""The `data` command group: build and check expert data sets (HARP builder, DeepScaleR rows, benchmark dedup,
NuRL hints, D_syn summaries, toy sets)."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from dail_harness.cli import app
from dail_harness.cli.options import config_command
from dail_harness.dsyn.hints import HintsConfig
from dail_harness.options import PATH, PATH_OR_NAME, option

data_app = typer.Typer(help="Build and check expert data sets.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")

BENCHMARKS = "aime24,aime25,beyondaime,imo-answerbench"


FILTER_SETTINGS = ("n", "filter_dir", "backend", "temperature", "top_p", "max_tokens")


@dataclass(kw_only=True)
class HarpConfig:
    out: str = option(path=PATH, help="Expert data JSONL to write.")
    first_year: int = option(1985, ge=1983, help="First AIME year.")
    last_year: int = option(2023, ge=1983, help="Last AIME year.")
    filter_model: str | None = option(
        None, path=PATH_OR_NAME, help="Keep only problems this model fails in all --n samples."
    )
    n: int = option(
        32,
        ge=1,
        flag="--n --samples-per-problem",
        help="Samples per problem for the filter (the paper: 32). Under torchrun write --samples-per-problem.",
    )
    filter_dir: str | None = option(
        None, path=PATH, help="Run directory of the filter's eval (resumable; default OUT.filter)."
    )
    backend: str = option("hf", help="Sampling back-end of the filter.")
    temperature: float | None = option(None, ge=0, help="Sampling temperature of the filter (default: eval's).")
    top_p: float | None = option(None, gt=0, le=1, help="Nucleus sampling mass of the filter (default: eval's).")
    max_tokens: int | None = option(None, ge=1, help="Maximum new tokens per filter sample (default: eval's).")
    dedup_against: str = option(BENCHMARKS, help="Benchmarks to check for overlaps ('' to skip).")
    drop_overlaps: bool = option(False, help="Remove overlapping problems.")
    limit: int | None = option(None, ge=1, help="Only the first L problems.")

    def ignored(self) -> dict[str, str]:
        """The filter's settings without --filter-model, --drop-overlaps without benchmarks (refused when given)."""
        out = dict.fromkeys(FILTER_SETTINGS, "--filter-model uses it") if not self.filter_model else {}
        if not self.dedup_against:
            out["drop_overlaps"] = "--dedup-against uses it"
        return out

    def check(self) -> None:
        if self.last_year < self.first_year:
            from dail_harness.errors import HarnessError

            raise HarnessError(f"--last-year {self.last_year} is before --first-year {self.first_year}")


@config_command(data_app, "harp", HarpConfig)
def data_harp_cmd(cfg: HarpConfig) -> None:
    """An e1-verifiable-style set from HARP: AIME problems, AoPS solutions as `Solution N:` blocks."""
    from pathlib import Path

    from dail_harness.dsyn.expert_data import build_harp_aime
    from dail_harness.dsyn.prompts import count_solutions
    from dail_harness.files import atomic_write_jsonl

    records = build_harp_aime(cfg.first_year, cfg.last_year)
    records = records[: cfg.limit] if cfg.limit else records
    typer.echo(
        f"HARP AIME {cfg.first_year}-{cfg.last_year}: {len(records)} problems, "
        f"{sum(count_solutions(r.solution) for r in records)} expert solutions"
    )
    if cfg.filter_model:
        filter_dir = Path(cfg.filter_dir) if cfg.filter_dir else Path(cfg.out).with_suffix(".filter")
        filtered = _filter_unsolved(records, cfg, filter_dir)
        if filtered is None:
            typer.echo("this process's share of the filter is stored; the last process to finish writes the data")
            return
        records = filtered
        typer.echo(f"kept {len(records)} problems that {cfg.filter_model} never solved in {cfg.n} samples")
    if cfg.dedup_against:
        records = _report_overlaps(records, cfg.dedup_against, cfg.drop_overlaps)
    atomic_write_jsonl(cfg.out, [r.to_dict() for r in records])
    typer.echo(f"wrote {len(records)} rows to {cfg.out}")


def _filter_unsolved(records, cfg: HarpConfig, run_dir):
    """The paper's filter: keep the problems the model fails in all n samples (an eval run; resumable). Under a
    launcher each process evaluates its shard; None unless this process merged the run (it was the last)."""
    from dail_harness.eval.pipeline import EvalConfig, run_eval
    from dail_harness.eval.store import RunStore
    from dail_harness.files import atomic_write_jsonl, iter_jsonl
    from dail_harness.scale.launch import current

    run_dir.mkdir(parents=True, exist_ok=True)
    data = run_dir / "problems.jsonl"
    rows = [{"id": r.problem_id, "problem": r.problem, "answer": r.answer} for r in records]
    if not data.exists() or [row for _, row in iter_jsonl(data)] != rows:
        # this run's selection (another --limit or years extends the eval run: problems sampled before keep their
        # samples); every process writes the same bytes, atomically
        atomic_write_jsonl(data, rows)
    sampling = {k: getattr(cfg, k) for k in ("temperature", "top_p", "max_tokens") if getattr(cfg, k) is not None}
    eval_cfg = EvalConfig(
        task=["file"],
        model=str(cfg.filter_model),
        out=str(run_dir / "eval"),
        n=cfg.n,
        k="1",
        backend=cfg.backend,
        data=str(data),
        answer_type="integer",
        **sampling,
    )
    launch = current()
    if launch.launched:
        from dail_harness.eval.launched import run_launched

        if run_launched(eval_cfg, launch) is None:
            return None
    else:
        run_eval(eval_cfg)
    solved = {r["problem_id"] for r in RunStore(run_dir / "eval").load_samples() if r["correct"]}
    return [r for r in records if r.problem_id not in solved]


def _report_overlaps(records, against: str, drop: bool, ids_out: str | None = None):
    from dail_harness.dsyn.expert_data import find_overlaps
    from dail_harness.eval.task import make_task
    from dail_harness.files import atomic_write_text

    tasks = [make_task(name.strip()) for name in against.split(",") if name.strip()]
    bench = {f"{task.name}/{p.id}": p.problem for task in tasks for p in task.load()}
    hits = find_overlaps(records, bench)
    if ids_out:
        atomic_write_text(ids_out, "".join(f"{i}\n" for i in sorted({h["benchmark_id"] for h in hits})))
    for h in hits:
        typer.echo(f"overlap: {h['problem_id']} ~ {h['benchmark_id']} (similarity {h['similarity']})")
    typer.echo(f"{len(hits)} overlap(s) with {against}" + (" removed" if drop and hits else ""))
    if drop:
        flagged = {h["problem_id"] for h in hits}
        records = [r for r in records if r.problem_id not in flagged]
    return records


@dataclass(kw_only=True)
class DedupConfig:
    data: str = option(path=PATH, help="Expert data file.")
    against: str = option(BENCHMARKS, help="Benchmarks to compare with, comma-separated.")
    out: str | None = option(None, path=PATH, help="Write the data without overlapping problems here.")
    ids_out: str | None = option(
        None, path=PATH, help="Write the overlapping benchmark problems as `task/id` lines here (for `eval --exclude`)."
    )


@config_command(data_app, "dedup", DedupConfig)
def data_dedup_cmd(cfg: DedupConfig) -> None:
    """Report training problems that overlap benchmark problems (normalised text similarity >= 0.7)."""
    from dail_harness.dsyn.expert_data import load_expert_data
    from dail_harness.files import atomic_write_jsonl

    records = _report_overlaps(load_expert_data(cfg.data), cfg.against, drop=cfg.out is not None, ids_out=cfg.ids_out)
    if cfg.ids_out:
        typer.echo(f"wrote the overlapping benchmark problems to {cfg.ids_out} (use: eval --exclude {cfg.ids_out})")
    if cfg.out is not None:
        atomic_write_jsonl(cfg.out, [r.to_dict() for r in records])
        typer.echo(f"wrote {len(records)} rows to {cfg.out}")


@dataclass(kw_only=True)
class DeepScaleRConfig:
    source: str = option(
        path=PATH,
        flag="--from",
        help="DeepScaleR-Preview-Dataset as published (agentica-org; deepscaler.json, or JSONL or Parquet) with "
        "columns problem, answer, solution.",
    )
    out: str = option(path=PATH, help="Problem rows JSONL to write (GRPO's --data).")


@config_command(data_app, "deepscaler", DeepScaleRConfig)
def data_deepscaler_cmd(cfg: DeepScaleRConfig) -> None:
    """Problem rows for GRPO from DeepScaleR (the paper's > 40K-problem RLVR set): answers without `$...$` and
    `\\boxed{}`, answer_type integer or math per row; empty problems or answers and repeated problems dropped."""
    from dail_harness.dsyn.expert_data import convert_deepscaler
    from dail_harness.files import atomic_write_jsonl

    rows, counts = convert_deepscaler(cfg.source)
    atomic_write_jsonl(cfg.out, rows)
    typer.echo(
        f"{cfg.source}: read {counts['read']} rows; kept {counts['kept']} ({counts['integer']} integer, "
        f"{counts['math']} math answers); dropped {counts['read'] - counts['kept']}: {counts['empty_problem']} "
        f"empty problem, {counts['empty_answer']} empty answer, {counts['duplicate']} duplicate problem"
    )
    typer.echo(f"wrote {len(rows)} rows to {cfg.out}")


@config_command(data_app, "hints", HintsConfig)
def data_hints_cmd(cfg: HintsConfig) -> None:
    """NuRL's hints, in NuRL's two steps: the model explains how to reach the gold answer, then writes one abstract
    hint from that explanation (`--style solution`: one step from the expert solution and the answer); hints that
    reveal the answer are drawn again (up to --attempts)."""
    from dail_harness.dsyn.hints import generate_hints
    from dail_harness.scale.launch import current

    launch = current()
    if launch.launched:
        from dail_harness.dsyn.launched import run_launched_hints

        stats = run_launched_hints(cfg, launch)
        if not stats["merged"]:
            return  # the last rank to finish merges (it printed which shards are still drawing)
        typer.echo(f"merged {launch.world} shards into {cfg.out}")
    else:
        stats = generate_hints(cfg)
    typer.echo(
        f"{cfg.out}: {stats['problems']} problems, {stats['new']} new rows, {stats['without_hint']} without "
        f"a hint after {cfg.attempts} attempts, {stats['rejected']} draws rejected for revealing the answer"
    )


@dataclass(kw_only=True)
class SummaryConfig:
    files: list[str] = option(
        positional=True, repeat=True, path=PATH, help="D_syn files (or their .traces.jsonl), e.g. one per tau."
    )
    model: str | None = option(
        None, path=PATH_OR_NAME, help="Tokenizer for token lengths (default: the model that generated the first file)."
    )
    answer_type: str = option("math", help="Verifier for rows that carry no grade.")
    plot: str | None = option(
        "dsyn.png", path=PATH, help="Plots: PLOT_tau.png (Figure 11) and PLOT_lengths.png (Figure 12)."
    )
    no_plot: bool = option(False, flag="--no-plot", help="Do not write the plots.")
    json: bool = option(False, flag="--json", help="Print the summaries as JSON.")
    plugin_dir: list[str] = option(
        default_factory=list, repeat=True, path=PATH, help="Directory of extra plugin modules."
    )


@config_command(data_app, "summary", SummaryConfig)
def data_summary_cmd(cfg: SummaryConfig) -> None:
    """Summarise D_syn files: acceptance, correctness (ours and the authors'), token lengths; plot correctness
    against tau (the paper's Figure 11) and the length histograms (Figure 12)."""
    import json
    from pathlib import Path

    from dail_harness import registry
    from dail_harness.dsyn.summary import dsyn_rows, format_summary, plot_lengths, plot_tau, summarize_dsyn
    from dail_harness.models.loading import load_tokenizer, resolve_model

    registry.load_plugin_dirs(cfg.plugin_dir)
    rows = dsyn_rows(cfg.files[0])  # not a D_syn file: say so before asking for a model
    model = cfg.model or next((r.get("model") for r in rows if r.get("model")), None)
    if model is None:
        from dail_harness.errors import HarnessError

        raise HarnessError("no model recorded in the file to count tokens with: pass --model", path=cfg.files[0])
    tokenizer = load_tokenizer(resolve_model(model))
    summaries = [summarize_dsyn(f, tokenizer, cfg.answer_type) for f in cfg.files]
    if cfg.json:
        typer.echo(json.dumps(summaries, indent=2))
    else:
        typer.echo(format_summary(summaries))
    if cfg.plot and not cfg.no_plot:
        plot = Path(cfg.plot)
        for drawn in (
            plot_tau(summaries, plot.with_name(f"{plot.stem}_tau{plot.suffix}")),
            plot_lengths(summaries, plot.with_name(f"{plot.stem}_lengths{plot.suffix}")),
        ):
            if drawn:
                typer.echo(f"plot: {drawn}", err=cfg.json)


@dataclass(kw_only=True)
class ToyConfig:
    out: str = option(path=PATH, help="Expert data JSONL to write.")
    n: int = option(16, ge=1, help="Problems.")
    seed: int = option(0, help="Seed of the problems.")
    min_operand: int = option(1, ge=0, help="Smallest operand.")
    max_operand: int = option(9, ge=0, help="Largest operand.")
    skip: int = option(
        0, ge=0, help="Leave out the first S problems of the seed's order (a set disjoint from one built with --n S)."
    )


@config_command(data_app, "toy", ToyConfig)
def data_toy_cmd(cfg: ToyConfig) -> None:
    """A toy expert set (sums of two small numbers with boxed answers), generated offline, for demos and smoke
    runs of the whole pipeline."""
    from dail_harness.dsyn.expert_data import toy_arithmetic
    from dail_harness.errors import HarnessError
    from dail_harness.files import atomic_write_jsonl

    if cfg.min_operand > cfg.max_operand:
        raise HarnessError("--min-operand must not exceed --max-operand", field="min_operand")
    records = toy_arithmetic(cfg.n, cfg.seed, cfg.min_operand, cfg.max_operand, cfg.skip)
    atomic_write_jsonl(cfg.out, [r.to_dict() for r in records])
    typer.echo(f"wrote {len(records)} toy problems to {cfg.out}")
