"""Training on Kubernetes: the Kubeflow job manifests, the pod's entry point and the job's outcome.

Pure functions and the standard library only (no Kubernetes client): the operator submits what
:mod:`.manifests` builds, the trigger reads the object's status with :mod:`.status`.
"""
