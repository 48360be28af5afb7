"""Sweep phi for a baseline and print how the *rounded* network's cost moves off the nominal 2^phi.

    python examples/compound_sweep.py [BASELINE_OR_SPEC_FILE]
"""

import sys

import scaler

network = sys.argv[1] if len(sys.argv) > 1 else "efficientnet-b0"
base = scaler.resolve_spec(network)
base_cost = scaler.estimate(base)
nominal_step = 1.2 * 1.1**2 * 1.15**2
print(f"{'phi':>5} {'resolution':>10} {'params':>12} {'FLOPs (MACs)':>14} {'ratio':>7} {'nominal':>8}")
for tenths in range(-10, 31, 5):
    phi = tenths / 10
    spec = scaler.compound(base, phi=phi)
    cost = scaler.estimate(spec)
    print(f"{phi:5.1f} {spec.resolution:10d} {cost.params:12,d} {cost.macs:14,d} "
          f"{cost.macs / base_cost.macs:7.3f} {nominal_step**phi:8.3f}")
