"""Configuration: every option of the entry points declared once, with its flags, default, help and check
(sections.py, using declare.py); the parser generated from the declarations (parser.py); the run's frozen
configuration, one section per layer (run_config.py); and resolve.py, which settles what is derived
(automatic values, what a checkpoint tells) before any work."""
