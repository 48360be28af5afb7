"""How close the v2 stage rule comes to the published EfficientNetV2-M and -L stage depths, grown from V2-S.

V2-M and V2-L add a 7th stage (wider, stride 1, at the same feature-map size as the 6th), which scaling a spec
cannot invent; here it is counted with the 6th stage. The depth multiplier is the published total of blocks
over V2-S's 40 (57/40 for M, 79/40 for L); the error is the sum over stages of |rule - published| blocks.

    python examples/stage_rule_fit.py            # the table in docs/STAGE_SCALING.md
"""

from scaler import get_baseline, scale
from scaler.scaling import StageRule

# Published stage depths (EfficientNetV2 paper, Table 4 and google/automl's effnetv2_configs), 7th stage lumped.
PUBLISHED = {"efficientnetv2-m": (3, 5, 5, 7, 14, 18 + 5), "efficientnetv2-l": (4, 7, 7, 10, 19, 25 + 7)}


def grown(rule: StageRule, target: tuple[int, ...]) -> tuple[int, ...]:
    """V2-S's stage depths scaled by `rule` to the published total number of blocks."""
    small = get_baseline("efficientnetv2-s")
    depth = sum(target) / sum(stage.repeats for stage in small.stages)
    return tuple(stage.repeats for stage in scale(small, depth=depth, rule=rule).stages)


def error(rule: StageRule, name: str) -> int:
    return sum(abs(a - b) for a, b in zip(grown(rule, PUBLISHED[name]), PUBLISHED[name]))


def main() -> None:
    print("| rule | later stages | later weight | V2-M depths (error) | V2-L depths (error) |")
    print("|---|---:|---:|---|---|")
    print(f"| published | | | {PUBLISHED['efficientnetv2-m']} | {PUBLISHED['efficientnetv2-l']} |")
    rules = [StageRule("uniform")] + [StageRule("v2", None, stages, weight)
                                      for stages in (1, 2, 3) for weight in (1.5, 2.0, 3.0)]
    for rule in rules:
        cells = [f"{grown(rule, PUBLISHED[n])} ({error(rule, n)})" for n in PUBLISHED]
        knobs = ["", ""] if rule.name == "uniform" else [str(rule.later_stages), f"{rule.later_weight:g}"]
        default = " (default)" if rule == StageRule("v2") else ""
        print(f"| {rule.name}{default} | {knobs[0]} | {knobs[1]} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
