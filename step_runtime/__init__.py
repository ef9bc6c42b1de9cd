"""alertops step runtime: the process that runs in every PipelineStep pod and TrainingSetBuild Job."""

__version__ = "0.1.0"
