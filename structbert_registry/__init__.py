"""The task-family registry (:mod:`structbert_registry.families`), below everything that reads it:
export, the serving library, the gateway, the CLI and the bench import it; it imports only the wire
API (:mod:`structbert_client.api`). Exporters and bench baselines are named, loaded when called."""
