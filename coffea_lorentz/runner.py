"""Former home of the run model, kept for one release: import from :mod:`coffea_lorentz.run` instead."""

from .run import RunConfig, RunSummary, check_inputs, default_max_constituents, load_fileset, run_tagging

__all__ = ["RunConfig", "RunSummary", "load_fileset", "check_inputs", "run_tagging", "default_max_constituents"]
