"""The modelops API shared by the operator, the training runtime and the serving runtime."""
