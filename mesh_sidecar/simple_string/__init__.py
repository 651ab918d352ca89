"""The simple-string model server: a tiny KServe V2 + mmesh.ModelRuntime server.

A model is a directory holding `model.txt` (or a single text file); inference
answers, for each BYTES input element, the model's text followed by that
element. It is the reference custom runtime of the project and the density
workload of the coordinator: per-model state is the model's text and nothing
else, so tens of thousands of models fit in a small process.
"""
