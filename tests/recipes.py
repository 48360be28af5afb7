"""The recipes the study tests train: real trainings, as small as the machinery allows."""

from dataclasses import replace

from scaler.searches.compound_recipe import QUICK, recipe_from_dict

# Smaller still than --quick: one epoch on two batches of images, for the machinery only.
TINY = recipe_from_dict({"epochs": 1, "train_size": 64, "val_size": 32, "alpha_range": (1.1, 1.2),
                         "beta_range": (1.05, 1.05)}, QUICK)
# Ten candidates, the same size of proxy: for parallel workers.
TEN = replace(TINY, alpha_range=(1.1, 1.3), beta_range=(1.05, 1.15))
