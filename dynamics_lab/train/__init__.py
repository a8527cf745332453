"""One run's life: the Lightning modules, the lifecycle every run goes through (start, build,
fit, status, verdict, finish), ensembles, and the worker process every launcher ends in."""
