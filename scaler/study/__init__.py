"""The study engine: what both searches share, written once. `proxy` (how a candidate is shrunk and trained),
`trials` (the trial attribute schema and states), `interrupts` (Ctrl-C at safe points), `engine` (opening a study,
the crash-safe worker loop, requeueing, duplicates), `verdict` (winner by mean, significance, rank stability) and
`storage` (where studies live, and what kind of study one is). A search defines only its candidates and its
objective (scaler.searches)."""

from pathlib import Path

STUDIES_FOLDER = Path("studies")  # where studies, their figures and fitted networks go by default (light to import)
