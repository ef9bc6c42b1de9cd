"""alertops operator: reconciles PipelineStep and TrainingSetBuild resources (kopf)."""
