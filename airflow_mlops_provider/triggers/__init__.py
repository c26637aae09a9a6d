"""Triggers: the deferrable waits of the provider's operators, run by Airflow's triggerer."""
