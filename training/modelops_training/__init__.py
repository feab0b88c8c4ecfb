"""The modelops training runtime: the program a training Job runs (`modelops train`).

It turns a Model's `spec.training` into a tested, packaged, versioned model: load the data, check
its schema, clean it, fit one scikit-learn Pipeline, evaluate it on a holdout against the quality
gates, save it with BentoML and export it as a `.bentomodel` archive to the artifact store. See
docs/training.md and docs/runtime-contract.md.
"""
