"""Host-side orchestration of a distproc cluster: model, backends, checks and CLI."""
