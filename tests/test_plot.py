"""Plots and reports: the plotted data are the study's trials (tested as data, not pixels), every format is
written, failed and pruned trials never break a figure, family curves come from the estimator, bad input is one
line."""

import json
import math
import re
import shutil
from dataclasses import replace

import optuna
import pytest

import scaler.study.engine as module  # where the proxy training is called from
from scaler.baselines import get_baseline
from scaler.budget import Budget, fit_phi
from scaler.estimator import estimate
from scaler.plot import draw_study, pareto_front, plot_study, point_series, study_plot_data
from scaler.plot_family import DEFAULT_RULES, draw_family, family_data, plot_family
from scaler.scaling import compound, stage_rule
from scaler.searches.compound_records import read_search as report
from scaler.grid import Candidate
from scaler.searches.compound import candidate_network, search
from scaler.searches.compound_records import study_total
from scaler.errors import OutOfMemory

from recipes import TINY
from test_train import run_cli


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """A finished TINY study with the found family validated at phi 0, 1 and 2."""
    folder = tmp_path_factory.mktemp("validated")
    storage = f"sqlite:///{folder}/v.db"
    search(TINY, None, "v", storage, device="cpu", validate_phis=(0, 1, 2))
    return folder, storage


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """A TINY study whose depth reference ran out of memory and whose width reference was pruned."""
    folder = tmp_path_factory.mktemp("faulty")
    storage = f"sqlite:///{folder}/f.db"
    original, calls = module.train, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OutOfMemory("out of memory at batch size 32: injected")
        if len(calls) == 3:
            raise optuna.TrialPruned("injected")
        return original(*args, **kwargs)

    module.train = failing
    try:
        search(TINY, None, "f", storage, device="cpu")
    finally:
        module.train = original
    return folder, storage


def test_pareto_front_keeps_only_points_nothing_beats():
    points = [(0, 1.0, 0.5), (1, 2.0, 0.4), (2, 2.0, 0.7), (3, 3.0, 0.7), (4, 4.0, 0.9), (5, 1.0, 0.3)]
    assert pareto_front(points) == (0, 2, 4)
    assert pareto_front([(3, 1.0, 0.5), (1, 1.0, 0.5), (2, 2.0, 0.5)]) == (3,)  # ties: the first listed
    assert pareto_front([]) == ()


@pytest.mark.slow
def test_plotted_points_are_the_studys_trials(validated):
    _, storage = validated
    result = report("v", storage)
    data = study_plot_data(result)
    scored = [t for t in result.trials if t.top1 is not None]
    assert [(t.number, t.macs, t.top1) for t in data.scored] == [(t.number, t.macs, t.top1) for t in scored]
    assert data.chosen == result.best.number
    # pareto_front's rule: beaten by more score at no more cost, or by the same score at less cost; of exact
    # equals (short proxies often tie), the earliest trial stands for all
    brute = {t.number for t in scored if not any(
        (o.macs <= t.macs and o.top1 > t.top1) or (o.macs < t.macs and o.top1 == t.top1)
        or (o.macs == t.macs and o.top1 == t.top1 and o.number < t.number) for o in scored)}
    assert set(data.pareto) == brute
    assert sorted(data.landscape) == sorted((t.alpha, t.beta, t.gamma, t.top1) for t in scored
                                            if t.kind == "compound")


@pytest.mark.slow
def test_a_study_of_both_stage_rules_plots_them_apart(tmp_path):
    storage = f"sqlite:///{tmp_path}/r.db"
    result = search(replace(TINY, stage_scaling=("uniform", "v2")), None, "r", storage, device="cpu",
                    validate_phis=(1, 2))
    data = study_plot_data(result)
    series = {label: (hollow, points) for label, _, _, hollow, points in point_series(data)}
    assert {"compound (grid) [uniform]", "compound (grid) [v2]", "depth only [uniform]", "depth only [v2]",
            "baseline [uniform]"} <= set(series)
    for label, (hollow, points) in series.items():
        assert hollow == label.endswith("[v2]")
        assert {t.stage_scaling for t in points} == {label.rsplit("[", 1)[1].rstrip("]")}
    assert sum(len(points) for _, points in series.values()) == len(data.scored)  # every point in one series
    rule = result.best.stage_scaling
    assert data.landscape_rule == rule
    assert sorted(data.landscape) == sorted((t.alpha, t.beta, t.gamma, t.top1) for t in data.scored
                                            if t.kind == "compound" and t.stage_scaling == rule)
    family = [t for t in result.trials if t.kind == "family"]
    assert family and {t.stage_scaling for t in family} == {rule}  # the found family is validated under its rule
    plot_study(result, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000


def test_a_uniform_study_names_no_rule_in_its_legend(validated):
    labels = [label for label, *_ in point_series(study_plot_data(report("v", validated[1])))]
    assert labels and not any("[" in label for label in labels)


@pytest.mark.slow
def test_validation_trains_the_family_and_single_dimension_rules_at_each_phi(validated):
    """... and the recipe's published rule (TINY's: the fast rule), each one curve."""
    _, storage = validated
    result = report("v", storage)
    data = study_plot_data(result)
    curves = dict(data.curves)
    assert list(curves) == ["found family", "depth only", "width only", "resolution only", "fast rule (dWr)"]
    assert all([phi for phi, _, _ in points] == [0.0, 1.0, 2.0] for points in curves.values())
    baseline = next(t for t in result.trials if t.kind == "baseline")
    assert all(points[0][1:] == (baseline.macs, baseline.top1) for points in curves.values())
    best = result.best
    assert curves["found family"][1][1:] == (best.macs, best.top1)  # phi 1 of the family is the winner itself
    for t in result.trials:
        if t.kind == "family" and t.phi == 2.0:
            expected = candidate_network(TINY, TINY.proxy_network(),
                                         Candidate(best.alpha, best.beta, best.gamma, "family", 2.0)).network
            assert t.macs == estimate(expected).macs and t.resolution == expected.resolution  # at equal cost
    study = optuna.load_study(study_name="v", storage=storage)
    # Phi 1 of the single-dimension and published rules is the references; phi 1 of the family is a trial of its
    # own; phi 2 is five: the family, three single dimensions, the fast rule.
    assert study_total(study) == len(TINY.candidates()) + 1 + 5 == len(result.trials)


@pytest.mark.slow
@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_every_format_is_written(validated, tmp_path, suffix, magic):
    _, storage = validated
    path = tmp_path / f"study{suffix}"
    plot_study(report("v", storage), path)
    assert path.read_bytes().startswith(magic) and path.stat().st_size > 10_000
    family = tmp_path / f"family{suffix}"
    plot_family("efficientnet-b0", family, phis=(0, 1, 2))
    assert family.read_bytes().startswith(magic) and family.stat().st_size > 10_000


@pytest.mark.slow
def test_failed_and_pruned_trials_plot_and_are_told_apart(faulty, tmp_path):
    _, storage = faulty
    result = report("f", storage)
    data = plot_study(result, tmp_path / "f.png")
    assert {(t.kind, t.state) for t in data.unscored} == {("depth", "FAIL"), ("width", "PRUNED")}
    assert all(t.kind not in ("depth", "width") for t in data.scored)
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_family_curves_follow_the_stage_rule(tmp_path, capsys, monkeypatch):
    v2 = stage_rule("v2")
    curves = family_data("efficientnet-b0", phis=(0, 4, 8), budget=Budget(macs=40e9), stage_rule=v2)
    for curve in curves:
        assert (curve.stage_scaling, curve.max_resolution) == ("v2", 480)
        assert curve.macs == tuple(estimate(compound(get_baseline("efficientnet-b0"), curve.alpha, curve.beta,
                                                     curve.gamma, phi, rule=v2)).macs for phi in (0, 4, 8))
    paper = curves[0]
    assert paper.budget_phi == fit_phi("efficientnet-b0", Budget(macs=40e9), rule=v2).phi
    assert paper.macs[-1] < family_data("efficientnet-b0", phis=(0, 4, 8))[0].macs[-1]  # the capped resolution
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "plot", "--family", "--stage-scaling", "v2", "--max-resolution", "400",
                             "--max-phi", "2", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {(c["stage_scaling"], c["max_resolution"]) for c in data["curves"]} == {("v2", 400)}
    assert (tmp_path / "studies" / "family.png").stat().st_size > 10_000  # beside the studies' figures
    assert [p.name for p in tmp_path.iterdir()] == ["studies"]  # nothing in the working folder itself


def test_a_budget_no_rule_can_meet_says_why(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "plot", "--family", "--budget-gflops", "0.00001", "--max-phi", "1")
    assert code == 0, err
    rows = [line for line in out.splitlines()
            if line.startswith(("paper", "depth", "width", "resolution")) and "cannot meet" not in line]
    assert rows and all(row.endswith("none (below)") for row in rows)
    notes = [line for line in out.splitlines() if " cannot meet the budget: " in line]
    assert len(notes) == len(rows) and all("below the smallest network this rule can make" in n for n in notes)
    code, out, err = run_cli(capsys, "plot", "--family", "--max-phi", "1")  # no budget: no budget column
    assert code == 0 and "phi within budget" not in out and "cannot meet" not in out


def test_family_curves_come_from_the_estimator_and_meet_the_budget_where_fit_phi_says():
    budget = Budget(macs=2e9)
    curves = family_data("efficientnet-b0", phis=(0, 0.5, 1, 2, 3), budget=budget)
    assert [c.label for c in curves] == list(DEFAULT_RULES)
    b0 = estimate("efficientnet-b0")
    for curve in curves:
        assert curve.macs[0] == b0.macs and curve.params[0] == b0.params
        assert list(curve.macs) == sorted(curve.macs)
        assert curve.budget_phi == fit_phi("efficientnet-b0", budget, curve.alpha, curve.beta, curve.gamma).phi
        at_two = compound(get_baseline("efficientnet-b0"), curve.alpha, curve.beta, curve.gamma, 2)
        assert curve.macs[3] == estimate(at_two).macs
        assert curve.memory_bytes[3] == estimate(at_two).peak_training_memory_bytes
    assert curves[1].alpha == 2.0 and curves[2].beta == pytest.approx(math.sqrt(2))


def in_folder(study_folder, tmp_path, monkeypatch):
    """Work from tmp_path with the study's database in studies/, as after `scaler search` there."""
    (tmp_path / "studies").mkdir()
    for db in study_folder.glob("*.db"):
        shutil.copy(db, tmp_path / "studies")
    monkeypatch.chdir(tmp_path)


@pytest.mark.slow
def test_plot_and_report_commands(validated, tmp_path, monkeypatch, capsys):
    in_folder(validated[0], tmp_path, monkeypatch)
    code, out, err = run_cli(capsys, "plot", "v")
    assert code == 0 and "wrote studies/v.png" in out and (tmp_path / "studies" / "v.png").exists(), err
    code, out, err = run_cli(capsys, "plot", "--family", "v", "--budget-gflops", "1", "-o", "fam.svg", "--max-phi", "3")
    assert code == 0 and "found (" in out and (tmp_path / "fam.svg").exists(), err
    code, out, err = run_cli(capsys, "report", "v", "--budget-gflops", "1")
    assert code == 0, err
    folder = tmp_path / "studies" / "v-report"
    text = (folder / "report.md").read_text()
    for section in ("## Settings", "## Grid", "## Trials", "## Winner", "## Budget fit", "## Final network"):
        assert section in text
    assert "](study.png)" in text and "](family.png)" in text
    assert (folder / "study.png").stat().st_size > 10_000 and (folder / "family.png").stat().st_size > 10_000
    trial_rows = [line for line in text.split("## Trials")[1].split("## Winner")[0].splitlines()
                  if line.startswith("| ") and not line.startswith("| trial")]
    assert len(trial_rows) == len(report("v", "sqlite:///studies/v.db").trials)


@pytest.mark.parametrize("args, message", [
    (["plot", "nope"], "study 'nope' not found"),
    (["plot"], "give a STUDY, or --family"),
    (["plot", "--family", "-o", "family.jpg"], "must end in .png, .svg, .pdf"),
    (["plot", "--family", "-o", "no/such/folder/family.png"], "folder no/such/folder does not exist"),
    (["plot", "--family", "--alpha", "1.2"], "--alpha, --beta and --gamma together"),
    (["plot", "--family", "--max-phi", "0"], "--max-phi"),
    (["plot", "--family", "--baseline", "nope"], "nope"),
    (["plot", "--family", "--budget-gflops", "-1"], "--budget-gflops: must be a positive number, got -1"),
    (["report", "nope"], "study 'nope' not found"),
    (["plot", "nope", "--storage", "sqlite:///missing.db"], "does not exist"),
    (["search", "--quick", "--validate-phi", "1,x"], "--validate-phi: expected numbers"),
    (["search", "--quick", "--validate-phi", "-1"], "validate phi"),
    (["plot", "--family", "--stage-scaling", "v3"], "--stage-scaling"),
    (["plot", "--family", "--stage-scaling", "v2", "--max-resolution", "100"], "max resolution: 100 px is below"),
])
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.jpg"))


@pytest.mark.slow
def test_an_unwritable_output_is_one_line(validated, tmp_path, monkeypatch, capsys):
    in_folder(validated[0], tmp_path, monkeypatch)
    (tmp_path / "taken").write_text("a file, not a folder")
    code, _, err = run_cli(capsys, "report", "v", "-o", "taken")
    assert code == 2 and err.strip().startswith("scaler: error: output: cannot make taken"), err
    code, _, err = run_cli(capsys, "plot", "v", "-o", "/proc/v.png")
    assert code == 2 and "cannot write /proc/v.png" in err, err


def _rendered(figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure).draw()
    return figure.canvas.get_renderer()


def _inside(inner, outer, slack=1.0) -> bool:
    return (outer.x0 - slack <= inner.x0 and inner.x1 <= outer.x1 + slack and outer.y0 - slack <= inner.y0
            and inner.y1 <= outer.y1 + slack)


@pytest.mark.slow
@pytest.mark.parametrize("study", ["validated", "faulty"])
def test_the_study_figure_keeps_its_parts_apart(study, request):
    """Fit for a paper: the panels (titles, tick and axis labels included) and the colour bar do not overlap,
    the legend (which names the chosen candidate) sits whole below the accuracy panel (over no point, apart from
    its axis label), every label inside its own axes, and the landscape is a heat map of equal cells whose text
    reads on its colour."""
    _, storage = request.getfixturevalue(study)
    data = study_plot_data(report(study[0], storage))
    figure = draw_study(data)
    renderer = _rendered(figure)
    ax, land, bar = figure.axes
    panels = [a.get_tightbbox(renderer) for a in (ax, land, bar)]
    assert not any(panels[i].overlaps(panels[j]) for i in range(3) for j in range(i + 1, 3))
    assert not ax.title.get_window_extent(renderer).overlaps(land.title.get_window_extent(renderer))
    legend = ax.get_legend()
    box = legend.get_window_extent(renderer)
    assert _inside(box, figure.bbox) and box.y1 < ax.get_window_extent(renderer).y0
    assert not box.overlaps(ax.xaxis.label.get_window_extent(renderer))
    assert any(t.get_text().startswith("chosen: alpha") for t in legend.get_texts())
    for axes in (ax, land):
        for text in axes.texts:
            assert _inside(text.get_window_extent(renderer), axes.get_window_extent(renderer)), text.get_text()
    mesh = land.collections[0]
    corners = mesh.get_coordinates()
    widths = {round(float(w), 9) for w in (corners[:, 1:, 0] - corners[:, :-1, 0]).ravel()}
    heights = {round(float(h), 9) for h in (corners[1:, :, 1] - corners[:-1, :, 1]).ravel()}
    assert widths == heights == {1.0}  # every cell the same size, one per grid point
    assert len(land.texts) == len(data.landscape)
    for text in land.texts:
        red, green, blue, _ = mesh.cmap(mesh.norm(_cell_value(data, land, text)))
        light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
        assert text.get_color() == ("black" if light else "white")
    if data.noise_std is not None:
        assert "±" in ax.get_ylabel()


def _cell_value(data, land, text):
    """The top-1 of the grid point a landscape text is written on."""
    alphas = sorted({a for a, _, _, _ in data.landscape})
    betas = sorted({b for _, b, _, _ in data.landscape})
    x, y = text.get_position()
    return next(score for a, b, _, score in data.landscape if (alphas.index(a), betas.index(b)) == (x, y))


def test_the_family_figure_names_each_rules_budget_line():
    budget = Budget(macs=2e9)
    curves = family_data("efficientnet-b0", phis=(0, 1, 2, 3, 4), budget=budget)
    figure = draw_family(curves, "efficientnet-b0", 1, budget)
    renderer = _rendered(figure)
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    for curve in curves:
        assert f"{curve.label}: phi {curve.budget_phi:.2f} within the budget" in labels
    panels = [a.get_tightbbox(renderer) for a in figure.axes]
    assert not any(panels[i].overlaps(panels[j]) for i in range(4) for j in range(i + 1, 4))


def test_the_family_figure_draws_each_cost_against_real_flops():
    """Dollar et al.'s figure on the user's network: params, activations and memory against each rule's real
    (rounded) FLOPs, so that rules compare at the same cost; FLOPs against phi beside them."""
    curves = family_data("efficientnet-b0", {"fast": (2 ** 0.1, 2 ** 0.4, 2 ** 0.05)} | DEFAULT_RULES,
                         phis=(0, 1, 2, 3))
    figure = draw_family(curves, "efficientnet-b0", 1)
    flops_panel, *cost_panels = [ax for ax in figure.axes if ax.get_visible()]
    assert len(cost_panels) == 3 and flops_panel.get_xlabel() == "phi"
    for ax, field in zip(cost_panels, ("params", "activations", "memory_bytes")):
        assert ax.get_xlabel().startswith("real FLOPs")
        for line, curve in zip(ax.get_lines(), curves):
            assert tuple(line.get_xdata()) == curve.macs and tuple(line.get_ydata()) == getattr(curve, field)
    assert not any(curve.latency_ms for curve in curves)  # no device: nothing was built or run


@pytest.mark.slow
def test_with_a_device_the_family_figure_measures_each_rules_latency_at_whole_phis(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "plot", "--family", "--rules", "compound,fast", "--max-phi", "1", "--device",
                             "cpu", "--baseline", "resnet18", "-o", "f.png", "--json")
    assert code == 0, err
    curves = json.loads(out)["curves"]
    for curve in curves:
        assert curve["latency_phis"] == [0.0, 1.0]
        assert all(0 < ms < 60_000 for ms in curve["latency_ms"])
    code, out, err = run_cli(capsys, "plot", "--family", "--rules", "fast", "--max-phi", "1", "--device", "cpu",
                             "--baseline", "resnet18", "-o", "f.png")
    assert code == 0 and "latency at phi 1" in out and re.search(r"fast \(dWr\).* \d+\.\d ms$", out, re.M), out
