"""The configuration contract: one typed model per custom resource.

These models are the single source of truth. The runtime reads manifests through them, the
operator validates and renders children from them, and `alertops crds` generates the CRDs
from them (a test fails when crds/ drifts).
"""
