"""An example mesh-sidecar runtime plugin: `echo`, over the simple-string model server."""
