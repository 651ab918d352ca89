# Embedded mesh coordinator: the S3 variant of the demo, and its benchmarks.

.PHONY: demo-s3 bench-mesh

# The same demo with the models in a local S3 server (moto, from the test extra).
demo-s3: install
	$(PY) -m mesh_sidecar.demo --storage s3

bench-mesh: install
	$(PY) bench/mesh_routing.py
	$(PY) bench/mesh_density.py
