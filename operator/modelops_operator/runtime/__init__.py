"""The operator's small controller runtime, beside Kopf's watch loop (docs/architecture.md).

Kopf delivers watch events; everything after that is here: `store` (the latest body of every
watched object, so a pass reads memory instead of the API server), `workqueue` (each Model at most
once however many triggers, one pass per Model at a time, retries with backoff), `kube` (the REST
calls, keeping the store in step with every answer), `events` (Events posted off the pass's
thread) and `controller` (seeding the store, the queue's workers, the periodic resync). Each piece
is built once in `modelops_operator.run` and handed to what uses it.
"""
