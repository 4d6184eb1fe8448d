"""The report's claims, each answered from the recorded runs with common.verdicts (docs/findings.md)."""

import math

import numpy as np
import pandas as pd

from . import predictions, verdicts
from .data import describe_source
from .paths import output_root
from .published import ABLATION_NAMES, AS_RUN_TWIN, published_table
from .results import atomic_path, shortened_flags
from .summary import _markdown_table, collect_results

BASIC = "e_basic"
SCHEDULES = ("e_warmup_cosine", "e_step_decay", "e_cosine_restarts")
# the Level E / Table 4 family, corrected together: every variant against the basic recipe, then the report's
# orderings of Table 4 (restarts above the other two, the cyclic basic recipe above all three, and the same at the
# schedules' 1e-3 peak: the control)
LEVEL_E_VARIANTS = ("e_ls_cutout", "e_warmup_cosine_as_run", "e_step_decay_as_run", "e_cosine_restarts_as_run",
                    "e_warmup_cosine", "e_step_decay", "e_cosine_restarts", "e_strided", "e_gap", "e_no_bn",
                    "e_combined_as_run", "e_combined")
LEVEL_E_ORDERINGS = [("e_cosine_restarts_as_run", "e_warmup_cosine_as_run"),
                     ("e_cosine_restarts_as_run", "e_step_decay_as_run"),
                     ("e_cosine_restarts", "e_warmup_cosine"), ("e_cosine_restarts", "e_step_decay")]
LEVEL_E_ORDERINGS += [(BASIC, f"{name}{suffix}") for suffix in ("_as_run", "") for name in SCHEDULES]
LEVEL_E_ORDERINGS += [("e_cyclic_peak_1e3", name) for name in SCHEDULES]  # the control: the same 1e-3 peak
# claims of a direction without a size (+-inf): each of C4's ablations costs accuracy, C19's 3x3 stem wins
ABLATIONS = tuple(ABLATION_NAMES)  # a Holm family of their own: they test no number of the report
CLAIMED_DIRECTION = {(name, BASIC): -math.inf for name in ABLATIONS}
CLAIMED_DIRECTION[("a_resnet18", "a_resnet18_imagenet_stem")] = math.inf

GPU, C100 = "a GPU (hours on a CPU)", "CIFAR-100 (not on this machine) and a GPU"
# id, the report's line, the claim in our words, and its parts: ("diff", a, b, dataset) compares two
# experiments, ("value", experiment, dataset) ours against the printed number, ("loss", ...) the printed test
# loss, ("ece", a, b, column) calibration() from the test predictions, ("needs", what) a claim no run here answers yet,
# ("code", what) a statement the report's code contradicts
CLAIMS = [
    ("C1", 63, "Without batch normalisation the VGG blocks stayed at chance (test accuracy 0.1); BN fixed it.",
     [("value", "e_no_bn", "cifar10"), ("diff", BASIC, "e_no_bn", "cifar10")]),
    ("C2", 65, "The network trains with AdamW.", [("code", "the code used Adam with coupled L2 weight decay, not "
                                                   "AdamW (docs/report-bugs.md, E2)")]),
    ("C3", 65, "Batch normalisation follows the convolutional and the fully connected layers.",
     [("code", "the code has no batch normalisation in its head (docs/report-bugs.md)")]),
    ("C4", 65, "Dropout, weight decay and augmentation improve generalisation.",
     [("diff", name, BASIC, "cifar10") for name in ABLATIONS]),
    ("C5", 69, "Label smoothing reduces overconfidence; Cutout improves robustness.",
     [("ece", "e_ls_cutout", BASIC, "ECE"), ("ece", "e_ls_cutout", BASIC, "confidence - accuracy"),
      ("needs", "a corruption benchmark for robustness (not yet run)")]),
    ("C6", 113, "The basic recipe reaches 83.92 %.", [("value", BASIC, "cifar10")]),
    ("C7", 117, "Label smoothing + Cutout reaches 83.10 %.",
     [("value", "e_ls_cutout", "cifar10"), ("diff", "e_ls_cutout", BASIC, "cifar10")]),
    ("C8", 237, "Table 4: warm-up + cosine 0.7997, step decay 0.3079, cosine restarts 0.8162.",
     [("value", f"{name}_as_run", "cifar10") for name in SCHEDULES]),
    ("C9", 119, "Cosine annealing with restarts is the best of the three schedules.",
     [("diff", a, b, "cifar10") for a, b in LEVEL_E_ORDERINGS[:4]]),
    ("C10", 119, "The basic recipe's cyclic learning rate still does best.",
     [("diff", a, b, "cifar10") for a, b in LEVEL_E_ORDERINGS[4:]]),
    ("C11", 121, "Strided convolutions instead of max-pooling: 81.58 %, test loss 0.5455.",
     [("value", "e_strided", "cifar10"), ("loss", "e_strided", "cifar10"), ("diff", "e_strided", BASIC, "cifar10")]),
    ("C12", 123, "A global-average-pooling head: 84.26 %.",
     [("value", "e_gap", "cifar10"), ("diff", "e_gap", BASIC, "cifar10")]),
    ("C13", 125, "All modifications combined: 79.45 %.",
     [("value", "e_combined_as_run", "cifar10"), ("diff", "e_combined_as_run", BASIC, "cifar10"),
      ("diff", "e_combined", BASIC, "cifar10")]),
    ("C14", 139, "Each modification helps on its own; combining them needs tuning.",
     [("diff", name, BASIC, "cifar10") for name in ("e_ls_cutout", "e_strided", "e_gap")]),
    ("C15", 133, "ResNet18: 91.92 % on CIFAR-10, 68.89 % on CIFAR-100.",
     [("value", "a_resnet18", "cifar10"), ("needs", C100)]),
    ("C16", 145, "ResNet18's training comes close to overfitting.", [("needs", "a criterion the report does not "
                                                                    "give; the curves are in notebook 03")]),
    ("C17", 134, "SE blocks improve ResNet18 significantly: 92.03 % / 70.12 %.",
     [("value", "a_se_resnet18", "cifar10"), ("diff", "a_se_resnet18", "a_resnet18", "cifar10"), ("needs", C100)]),
    ("C18", 135, "ConvNeXt: 91.59 % / 70.77 %, the best on CIFAR-100.", [("needs", f"{GPU}; {C100}")]),
    ("C19", 35, "A 3x3 stem instead of 7x7 is what makes the networks work on 32x32 images.",
     [("diff", "a_resnet18", "a_resnet18_imagenet_stem", "cifar10")]),
    ("C20", 155, "SupCon pretraining + an MLP classifier: 0.7120 on CIFAR-100, above cross-entropy.",
     [("needs", C100)]),
    ("C21", 155, "SupCon's fast early convergence shows concentrated pretrained features.", [("needs", C100)]),
    ("C22", 159, "Table 2 (ImageNette): 30 % noise lowers accuracy from 0.8400 to 0.7192.",
     [("value", "noise_clean", "imagenette"), ("value", "noise_sym30_ce", "imagenette"),
      ("diff", "noise_sym30_ce", "noise_clean", "imagenette")]),
    ("C23", 159, "Co-teaching recovers much of it: 0.7842 at 30 % noise.",
     [("value", "noise_sym30_coteach", "imagenette"), ("diff", "noise_sym30_coteach", "noise_sym30_ce", "imagenette")]),
    ("C24", 165, "Table 2's test losses: 0.9287 / 1.2990 / 0.9818.",
     [("needs", "a test loss the report's script never computed: these are network 1's label-smoothed validation "
       "losses at an unrecorded epoch (docs/report-bugs.md, A3); ours, plain test cross-entropy, do not compare")]),
    ("C25", 178, "ResNet18 (0.6889) beats the ViT (0.6276) on CIFAR-100.", [("needs", C100)]),
    ("C26", 178, "The ViT converges much more slowly but reaches a good point.", [("needs", C100)]),
    ("C27", 178, "The ViT would do better on much larger data.", [("needs", "larger data than the report's")]),
    ("C28", 190, "Table 3's test losses: 0.6448 / 0.8876.", [("needs", C100)]),
]


def _published(experiment: str, dataset: str) -> tuple:
    """(accuracy, loss, the epoch it compares at) the report printed (through a run as written, its as-run twin)."""
    table = published_table()
    match = table[(table["experiment"] == AS_RUN_TWIN.get(experiment, experiment)) & (table["dataset"] == dataset)]
    if match.empty:
        return math.nan, math.nan, "final"
    row = match.iloc[0]
    return float(row["acc"]), float(row["loss"]) if pd.notna(row["loss"]) else math.nan, row["compared_at"]


def _sides(results: pd.DataFrame, experiments: list, dataset: str) -> tuple:
    """(source, rows per experiment) on the one source every experiment has, the one with most seeds preferred."""
    rows = results[(results["dataset"] == dataset) & results["experiment"].isin(experiments)]
    best, count = None, -1
    for source, group in rows.groupby("source"):
        seeds = [group[group["experiment"] == name]["seed"].nunique() for name in experiments]
        if min(seeds) > count:
            best, count = source, min(seeds)
    if best is None or count == 0:
        return None, {name: rows.iloc[0:0] for name in experiments}
    return best, {name: rows[(rows["source"] == best) & (rows["experiment"] == name)] for name in experiments}


def _metric(rows: pd.DataFrame, experiment: str, dataset: str, kind: str = "acc") -> np.ndarray:
    """Each seed's test accuracy (or loss) at the epoch the report tested."""
    at = "best" if _published(experiment, dataset)[2] == "best val" else "final"
    return pd.to_numeric(rows.sort_values("seed")[f"test_{kind}_{at}"]).to_numpy(dtype=float)


def _paired(rows_a: pd.DataFrame, rows_b: pd.DataFrame, experiment: str, dataset: str) -> dict:
    """McNemar's test of each side's lowest seed that kept test predictions, naming the seeds; {} without them."""
    at = "best" if _published(experiment, dataset)[2] == "best val" else "final"
    kept = [[(row["seed"], s) for _, row in rows.sort_values("seed").iterrows()
             if (s := predictions.recorded_predictions(row.to_dict())) is not None] for rows in (rows_a, rows_b)]
    if not all(kept):
        return {}
    (seed_a, a), (seed_b, b) = kept[0][0], kept[1][0]
    return {"mcnemar": verdicts.mcnemar(predictions.at_epoch(a, at)[2], predictions.at_epoch(b, at)[2]),
            "paired": f"seed {seed_a} vs {seed_b}: "}


def level_e_family(results: pd.DataFrame) -> pd.DataFrame:
    """Every Level E / Table 4 difference of the report beside ours, Holm-corrected as one family."""
    pairs = [(name, BASIC) for name in LEVEL_E_VARIANTS] + LEVEL_E_ORDERINGS
    return judge_pairs(results, pairs, "cifar10")


def ablation_family(results: pd.DataFrame) -> pd.DataFrame:
    """C4's ablations against the basic recipe, Holm-corrected together."""
    return judge_pairs(results, [(name, BASIC) for name in ABLATIONS], "cifar10")


def judge_pairs(results: pd.DataFrame, pairs: list, dataset: str) -> pd.DataFrame:
    """Differences a - b of (a, b) experiment pairs, ours beside the report's, judged as one Holm family."""
    results = results[~shortened_flags(results["shortened"]).astype(bool)]  # --epochs runs are not the recipe
    family = []
    for a, b in pairs:
        source, rows = _sides(results, [a, b], dataset)
        claimed = CLAIMED_DIRECTION.get((a, b), _published(a, dataset)[0] - _published(b, dataset)[0])
        family.append({"label": f"{a} - {b}", "a": _metric(rows[a], a, dataset), "b": _metric(rows[b], b, dataset),
                       "claimed": claimed, "data": describe_source(source) if source else "",
                       **(_paired(rows[a], rows[b], a, dataset) if source else {})})
    table = verdicts.judge(family)
    table.insert(0, "data", [pair["data"] for pair in family])
    return table


def calibration(results: pd.DataFrame, experiment: str, dataset: str = "cifar10") -> pd.DataFrame:
    """Each seed's expected calibration error and mean confidence minus accuracy, from its final-epoch predictions."""
    lines, rows = [], results[(results["experiment"] == experiment) & (results["dataset"] == dataset)]
    for _, row in rows.sort_values("seed").iterrows():
        stored = predictions.recorded_predictions(row.to_dict())
        if stored is not None:
            _, confidence, right = predictions.at_epoch(stored, "final")
            lines.append({"run": row["run_id"], "source": row["source"], "seed": row["seed"],
                          "ECE": predictions.expected_calibration_error(confidence, right),
                          "confidence - accuracy": float(np.mean(confidence) - np.mean(right))})  # > 0: overconfident
    return pd.DataFrame(lines, columns=["run", "source", "seed", "ECE", "confidence - accuracy"])


def calibration_test(results: pd.DataFrame, a: str, b: str, key: str = "ECE") -> tuple:
    """Source, seeds (calibration() rows), Welch test of a's `key` against b's on shared data, and the verdict."""
    tables = {name: calibration(results, name) for name in (a, b)}
    source = min(set(tables[a]["source"]) & set(tables[b]["source"]), default=None)
    seeds = {name: t[t["source"] == source] for name, t in tables.items()}
    comparison = verdicts.compare(seeds[a][key], seeds[b][key])
    return source, seeds, comparison, verdicts.verdict(comparison, -math.inf)  # the claim: less overconfident


def _part(results: pd.DataFrame, family: pd.DataFrame, part: tuple) -> dict:
    """One part of a claim: what was compared, on which data, with how many seeds, the verdict and its statistic."""
    kind, *args = part
    if kind in ("needs", "code"):  # a statement about the code is answered by reading it, not by a run
        what = f"needs {args[0]}" if kind == "needs" else f"a statement about the code, not an experiment: {args[0]}"
        return {"verdict": f"{verdicts.NOT_RUN}: {what}"}
    if kind == "diff":
        a, b, dataset = args
        label = f"{a} - {b}"
        holm = label in family.index and dataset == "cifar10"
        row = (family if holm else judge_pairs(results, [(a, b)], dataset)).loc[label]
        tested = "" if math.isnan(row["p"]) else f"p {verdicts.format_p(row['p'])}" + (
            f" (Holm {verdicts.format_p(row['p (Holm)'])})" if holm else "") + "; "
        paired = row["McNemar (one network a side)"]
        statistic = "" if row["verdict"] == verdicts.NOT_RUN else (
            f"{row['ours']:+.4f}{' ' + row['95% interval'] if row['95% interval'] else ''} against the report's "
            f"{_claimed(row['report'])}; {tested}{row['test']}" + (f"; McNemar {paired}" if paired else ""))
        return {"what": f"{a} vs {b}", "data": row["data"], "seeds": row["seeds"], "verdict": row["verdict"],
                "statistic": statistic, "rows": _rows(results, [a, b], dataset)}
    if kind == "ece":
        a, b, key = args
        source, seeds, comparison, found = calibration_test(results, a, b, key)
        return {"what": f"{key} (final epoch{', 15 bins' if key == 'ECE' else ''}) of {a} vs {b}",
                "data": describe_source(source) if source else "", "seeds": f"{comparison.n_a} vs {comparison.n_b}",
                "verdict": found + (": needs both runs' test predictions" if found == verdicts.NOT_RUN else ""),
                "statistic": "" if found == verdicts.NOT_RUN else _statistic(comparison, " vs ".join(
                    f"{seeds[name][key].mean():+.4f}" for name in (a, b))), "rows": _rows(results, [a, b], "cifar10")}
    experiment, dataset = args
    source, values, claimed, comparison = against_report(results, experiment, dataset, kind)
    return {"what": f"{experiment} test {'loss' if kind == 'loss' else 'accuracy'}",
            "data": describe_source(source) if source else "", "seeds": str(len(values)),
            "verdict": verdicts.value_verdict(comparison), "rows": _rows(results, [experiment], dataset),
            "statistic": _statistic(comparison, f"{values.mean():.4f} vs the report's {claimed:.4f}") if len(values)
            else ""}


def against_report(results: pd.DataFrame, experiment: str, dataset: str, kind: str = "acc") -> tuple:
    """(source, our seeds' test accuracy or loss, the report's printed number, their one-sample comparison)."""
    source, rows = _sides(results, [experiment], dataset)
    values = _metric(rows[experiment], experiment, dataset, "loss" if kind == "loss" else "acc")
    accuracy, loss, _ = _published(experiment, dataset)
    claimed = loss if kind == "loss" else accuracy
    return source, values, claimed, verdicts.against_value(values, claimed)


def _claimed(difference: float) -> str:
    """The report's difference for a sentence: `-0.0082`, or `drop` / `rise` where it claims a direction only."""
    return ("drop" if difference < 0 else "rise") if math.isinf(difference) else f"{difference:+.4f}"


def _statistic(comparison: verdicts.Comparison, head: str) -> str:
    """`0.8144 vs 0.8392: -0.0248 [-0.0278, -0.0218], p 0.0002; one-sample t, 3 seeds (df 2)`."""
    if math.isnan(comparison.low):
        return f"{head}: {comparison.difference:+.4f}; {comparison.test}"
    return (f"{head}: {comparison.difference:+.4f} [{comparison.low:+.4f}, {comparison.high:+.4f}], "
            f"p {verdicts.format_p(comparison.p)}; {comparison.test}")


def _rows(results: pd.DataFrame, experiments: list, dataset: str) -> str:
    """Links to the results CSVs that hold these experiments' rows."""
    chosen = results["experiment"].isin(experiments) & (results["dataset"] == dataset)
    return ", ".join(f"[{name}](../results/{name}.csv)" for name in sorted(set(results[chosen]["notebook"])))


def _joined(parts: list, key: str) -> str:
    """One cell from a claim's parts: each part's text (the data and the rows once each, whatever parts share)."""
    texts = [part[key] for part in parts if part.get(key)]
    if key == "rows":
        texts = [link for text in texts for link in text.split(", ")]
    if key in ("data", "rows"):
        texts = list(dict.fromkeys(texts))
    return " · ".join(texts) or "—"


def findings_table(results: pd.DataFrame) -> pd.DataFrame:
    """One line per claim of the report: its words, and each part's comparison, data, seeds, verdict and statistic."""
    family = pd.concat([level_e_family(results), ablation_family(results)])
    lines = []
    for claim, line, words, parts in CLAIMS:
        found = [_part(results, family, part) for part in parts]
        lines.append({"claim": claim, "report line": line, "the report says": words} | {
            key: _joined(found, key) for key in ("what", "data", "seeds", "verdict", "statistic", "rows")})
    return pd.DataFrame(lines)


def write_findings(profile: str = "full", path=None) -> str:
    """docs/findings.md under the profile's output root (smoke: smoke/docs/): every claim with the verdict its
    recorded runs give; returns the markdown."""
    table = findings_table(collect_results(profile))
    counts = table["verdict"].str.split(" · ").explode().str.split(":").str[0].value_counts()
    text = (f"# The report's claims against our runs (profile: {profile})\n\n"
            "Written by notebook 08 from the recorded rows; nothing here is typed by hand except the claims' words. "
            "A verdict compares the same data on both sides: Welch's t between two sets of seeds, a t prediction "
            "interval for one run against a set of seeds, a one-sample t for a printed number (none for a single "
            "run: one run a side cannot tell). The Level E / Table 4 differences are Holm-corrected as one family, "
            f"C4's three ablations as another (α = {verdicts.ALPHA}). McNemar's exact test pairs two networks on the "
            "same test images and so knows nothing of seed-to-seed noise. The report trained on the original files; "
            "where we trained on a copy (the `data` column), its printed numbers are compared across data and "
            "differences are the fairer test.\n\nVerdicts over all parts: "
            + ", ".join(f"{name} {n}" for name, n in counts.items()) + ".\n\n" + _markdown_table(table) + "\n")
    with atomic_path(path or output_root(profile) / "docs" / "findings.md") as tmp:
        tmp.write_text(text)
    return text
