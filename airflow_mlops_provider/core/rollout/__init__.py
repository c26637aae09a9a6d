"""Progressive rollout: the prediction service's traffic signals and the guardrails that judge a canary."""
