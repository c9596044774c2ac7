"""Looking at models rather than training them: parameters and FLOPs in the official units (flops.py) and
what the attention layers learned (attention_insight.py)."""
