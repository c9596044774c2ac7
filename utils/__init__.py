"""Everything behind the entry points, grouped by what it does: config/ (options and the run's
configuration), data/ (datasets and input pipelines), training/ (loops, state, checkpoints), running/ (the
driver, processes, signals, run folders and files) and analysis/ (FLOPs, attention). errors.py and seeds.py
are leaves every group uses."""
