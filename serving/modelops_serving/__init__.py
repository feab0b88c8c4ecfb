"""The serving runtime: a BentoML service that serves one model version and measures it.

`bentoml serve modelops_serving.service:ModelService` runs it (docs/serving.md). Modules:
`config` (environment), `home` (one runtime per BENTOML_HOME), `artifact` (archive import and model
loading), `schema` (row validation), `runtime` (predict and feedback, HTTP-free), `metrics`
(Prometheus series), `feedback` (prediction memory and scoring), `middleware` (HTTP glue),
`service` (the BentoML service).
"""
