"""One run's life: the Lightning modules, the lifecycle every run goes through (start, build,
fit, status, verdict, finish), ensembles, and the worker process every launcher ends in."""

from dynamics_lab.train.lean_import import import_lightning

import_lightning()  # before anything below imports it: without plotting and scipy
