"""Keys to rows: the runner, the output folder (journal, results, warnings, figures) and the
report page."""
