"""A run's life around the training loop: the driver behind the entry points (runner.py) and the error
contract every CLI keeps (entry.py), the process group (distributed.py), stop signals (preemption.py), the
run folder and its files (run_folder.py, files.py, run_logger.py), and what is shown while it runs
(progress.py)."""
