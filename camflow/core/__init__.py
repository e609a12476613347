"""The kernel every process shares: the deployment config, Kafka clients, the frame store."""
