"""Training and evaluation: the loops (engine.py), the epoch loop with checkpoints and stops (trainer.py),
what a run trains and how each step updates it (state.py: model, optimizer, schedule, scaler, EMA, mixing),
the numerics, the model's placement, and the checkpoint files."""
