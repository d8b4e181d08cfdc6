"""The contract between the runner (experiments/) and the dashboard (dashboard/): the run schema, the settings,
every derived number and statistic, the known datasets, and the read side of the tracking store.
Both sides import it; it imports neither."""
