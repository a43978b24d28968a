"""``busray confirm SWEEP``: is the sweep's winner really better? Its top configs again, with fresh seeds.

The best of a sweep's trials is partly luck (the winner's curse): seeds alone move one config's test
accuracy by several points. Confirmation re-runs the sweep's top ``K`` configurations and a reference
with ``N`` seeds the sweep never used, as an ablation (the same engine, resumable, recorded in the store
as its own group ``<sweep>_confirm``), and reports -- as ``busray report`` does -- each config's mean ±
CI over the seeds, the paired difference to the reference with its bootstrap CI and p, and how often the
sweep's own winner stays the best across the new seeds.

- The configs are the trials' own ``config.yaml`` (their whole run config), ranked by the sweep's
  objective over completed and stopped-early trials; a trial's seed is replaced by the fresh seeds.
- The reference (``--reference``): ``paper`` (default) is the sweep's best config with every key the
  sweep varied set back to busray's default, i.e. the paper's value (``loss.w_seg`` 0.8, ``model.tau``
  ...); a YAML file of ``key: value`` overrides is applied on top of that.
- The fresh seeds follow the largest seed the sweep used; resources are the best trial's.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from busray.ablation.report import WrittenReport, build_report, select_runs
from busray.config import Config, config_to_dict
from busray.configtools import ConfigError, apply_values, flatten, load_yaml
from busray.objective import Objective
from busray.results.query import format_markdown
from busray.results.ranking import choose_metrics, rank
from busray.results.schema import config_columns
from busray.storage import is_bucket, local_copy

REFERENCE = "reference"
SUFFIX = "_confirm"
WINNER = "winner.json"
#: Keys a confirmation sets itself (the seed per replicate; the monitor follows the objective).
SET_BY_RUN = ("train.seed", "train.monitor", "train.monitor_mode")


@dataclass(frozen=True)
class ConfirmPlan:
    """The ablation that confirms ``sweep`` (a dict of an ablation file's shape) and its winner's variant."""
    sweep: str
    spec: dict
    winner: str
    objective: Objective
    varied: tuple[str, ...] = ()  # the config keys the sweep varied (what tells the configs apart)

    @property
    def name(self) -> str:
        return self.spec["name"]


def confirm_plan(runs: pd.DataFrame, sweep: str, top: int = 3, seeds: int = 3, reference: str = "paper",
                 max_concurrent: int = 2) -> ConfirmPlan:
    """The confirmation of ``sweep`` from its store rows (``runs``: the store's rows of that sweep)."""
    usable = runs[runs["status"] != "failed"]
    if usable.empty:
        raise ConfigError(f"sweep '{sweep}': no completed or stopped-early trial to confirm")
    metrics = choose_metrics(usable)
    best = rank(usable, metrics).head(top)
    configs = {_variant(i, row): _run_config(row) for i, (_, row) in enumerate(best.iterrows(), start=1)}
    winner = next(iter(configs))
    varied = [c for c in config_columns(list(runs.columns)) if not c.startswith("resources.")
              and runs[c].astype(str).nunique(dropna=False) > 1 and c not in SET_BY_RUN]
    variants = {REFERENCE: _reference(configs[winner], varied, reference), **configs}
    used = pd.to_numeric(runs["seed"], errors="coerce").dropna()
    first = int(used.max()) + 1 if len(used) else 0
    resources = {k.split(".", 1)[1]: _plain(best.iloc[0][k]) for k in best.columns if k.startswith("resources.")
                 and pd.notna(best.iloc[0][k])}
    spec = {"kind": "ablation", "name": f"{sweep}{SUFFIX}", "base": {}, "variants": variants,
            "baseline": REFERENCE, "seeds": list(range(first, first + seeds)),
            "objective": Objective.from_lists([m for m, _ in metrics], [m for _, m in metrics]).label(),
            "resources": resources, "max_concurrent": max_concurrent,
            "description": f"sweep {sweep}: its top {len(configs)} configs and the reference ({reference}), "
                           f"{seeds} fresh seeds"}
    return ConfirmPlan(sweep, spec, winner, Objective.parse(spec["objective"]), tuple(varied))


def configs_table(plan: ConfirmPlan) -> pd.DataFrame:
    """One row per confirmed config: its values of the keys the sweep varied."""
    rows = [{"variant": name, **{k: config.get(k) for k in plan.varied}} for name, config in plan.spec["variants"].items()]
    return pd.DataFrame(rows, columns=["variant", *plan.varied])


def _variant(rank_: int, row: pd.Series) -> str:
    return f"top{rank_}_{row['trial_id']}"


def _run_config(row: pd.Series) -> dict:
    """A trial's whole run config (its run folder's config.yaml), without what a confirmation sets."""
    run_dir = str(row["run_dir"])
    folder = local_copy(run_dir, "config.yaml") if is_bucket(run_dir) else Path(run_dir)
    try:
        flat = flatten(load_yaml(folder / "config.yaml"))
    except ConfigError as err:
        raise ConfigError(f"trial {row['trial_id']}: {err}") from None
    return {k: v for k, v in flat.items() if k not in SET_BY_RUN}


def _reference(winner: Mapping[str, Any], varied: list[str], reference: str) -> dict:
    """The winner's config with the keys the sweep varied at busray's defaults (the paper's values),
    then a reference file's overrides."""
    defaults = flatten(config_to_dict(Config()))
    config = {k: (defaults[k] if k in varied and k in defaults else v) for k, v in winner.items()}
    if reference == "paper":
        return config
    path = Path(reference)
    if not path.is_file():
        raise ConfigError(f"--reference: '{reference}' is neither 'paper' nor a YAML file of overrides")
    return flatten(apply_values(config, load_yaml(path)))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def winner_stability(runs: pd.DataFrame, plan: ConfirmPlan) -> dict[str, Any]:
    """Per fresh seed, which config is best by the sweep's objective (validation, as the sweep chose)
    and by its test counterpart; on how many seeds the sweep's winner is (or ties for) the best.
    ``runs``: one completed row per (variant, seed), as the report selects them."""
    metric, mode = plan.objective.metric, plan.objective.mode
    test_metric = "test/" + metric.split("/", 1)[1]
    out: dict[str, Any] = {"winner": plan.winner, "seeds": 0}
    done = runs[runs["status"] == "completed"].copy()
    if test_metric == "test/score":  # not recorded for test: the same mean of IoU and accuracy as val/score
        done[test_metric] = 0.5 * (done["test/seg/iou"] + done["test/clf/acc"])
    for split, column in (("val", metric), ("test", test_metric)):
        best = []  # per seed: the configs with the best value (several when they tie)
        for _, group in done.groupby("seed"):
            values = group.set_index("variant")[column].dropna()
            if len(values) == len(plan.spec["variants"]):
                top = values.max() if mode == "max" else values.min()
                best.append(sorted(values.index[values == top]))
        out["seeds"] = max(out["seeds"], len(best))
        out[f"{split}_wins"] = sum(plan.winner in b for b in best)  # a tie for the best counts
        out[f"{split}_best"] = best
    return out


def stability_line(stability: Mapping[str, Any], metric: str) -> str:
    """``the sweep's winner top1_a1b2 is the best config (or tied for it) on 2 of 3 fresh seeds by val/score
    (1 of 3 by test/score)``."""
    seeds, test = stability["seeds"], f"test/{metric.split('/', 1)[1]}"
    return (f"the sweep's winner {stability['winner']} is the best config (or tied for it) on "
            f"{stability['val_wins']} of {seeds} fresh seeds by {metric} ({stability['test_wins']} of {seeds} by {test})")


def confirm_report(store, plan: ConfirmPlan, fmt: str, out_dir: str | Path) -> tuple[WrittenReport, str]:
    """``busray report``'s documents for the confirmation (the reference as baseline, ± the 95 % CI of
    the mean), with the winner's stability across the fresh seeds added (``winner.json``, and a closing
    paragraph of an md or html report); returns the report and the stability line."""
    report = build_report(store, plan.name, fmt, out_dir, baseline=REFERENCE, spread="ci")
    runs = select_runs(store.runs(sweep=plan.name), plan.name, REFERENCE).runs  # the report's runs
    stability = winner_stability(runs, plan)
    line = stability_line(stability, plan.objective.metric)
    (Path(out_dir) / WINNER).write_text(json.dumps(stability, indent=2), encoding="utf-8")
    if fmt in ("md", "html"):
        configs = configs_table(plan)
        text = report.path.read_text(encoding="utf-8")
        paragraph = (f"\n## The configurations\n\n{format_markdown(configs)}\n"
                     f"\n## The sweep's winner on fresh seeds\n\n{line[0].upper()}{line[1:]}.\n") if fmt == "md" else \
            (f"\n<h2>The configurations</h2>\n{configs.to_html(index=False)}\n"
             f"<h2>The sweep's winner on fresh seeds</h2>\n<p>{html.escape(line)}.</p>\n")
        report.path.write_text(text + paragraph, encoding="utf-8")
    return report, line
