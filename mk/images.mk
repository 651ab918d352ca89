# Container image of the sidecar: `make image`, `make image-test`.
#
# Built with buildah (Debian package, as root, no daemon). No image registry is
# needed: the base image is a minimal Debian root filesystem made with
# debootstrap and imported FROM scratch, and pip installs from a wheelhouse
# downloaded beforehand (--no-index). Override BASE_IMAGE (e.g. python:3.12-slim)
# on a machine that can pull images; then pip uses the package index.

IMAGE ?= localhost/mesh-sidecar:dev
EXAMPLE_IMAGE ?= localhost/simple-string-server:dev
# More `--build-arg`s for the sidecar image (EXTRA_PACKAGES=..., BOTOCORE_SERVICES=...).
IMAGE_BUILD_ARGS ?=
BASE_SUITE ?= bookworm
LOCAL_BASE_IMAGE := localhost/mesh-sidecar-base:$(BASE_SUITE)
BASE_IMAGE ?= $(LOCAL_BASE_IMAGE)
IMAGE_EXTRAS ?= all
IMAGE_WORK := .work/image
IMAGE_ROOTFS := $(IMAGE_WORK)/rootfs-$(BASE_SUITE).tar
IMAGE_WHEELS := $(IMAGE_WORK)/wheels
IMAGE_TOOLS_STAMP := .work/stamps/image-tools
# chroot isolation: no daemon, no user namespace or cgroup setup needed.
BUILDAH_BUD := buildah bud --isolation chroot --layers
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The CRD models of KServe's Python SDK and the Kubernetes models they use:
# tests/images/ builds the ServingRuntime schema from them. Sources only, no deps.
KSERVE_MODELS := .work/kserve-models
KSERVE_MODELS_STAMP := $(KSERVE_MODELS)/.installed

INSTALL_TARGETS += $(KSERVE_MODELS_STAMP)

.PHONY: image image-base image-test image-tools bench-image

$(KSERVE_MODELS_STAMP):
	rm -rf $(KSERVE_MODELS)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
		--target $(KSERVE_MODELS) kserve==0.21.0 kubernetes==33.1.0
	touch $@

image-tools: $(IMAGE_TOOLS_STAMP)
$(IMAGE_TOOLS_STAMP):
	@command -v buildah >/dev/null && command -v podman >/dev/null \
		&& command -v debootstrap >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			buildah podman runc debootstrap >/dev/null; }
	mkdir -p $(dir $@) && touch $@

# Cached: debootstrap takes about a minute and needs only the Debian mirror.
$(IMAGE_ROOTFS): images/base/make-rootfs.sh | $(IMAGE_TOOLS_STAMP)
	mkdir -p $(IMAGE_WORK)
	bash images/base/make-rootfs.sh $@ $(BASE_SUITE)

image-base: $(IMAGE_ROOTFS) images/base/Containerfile
	cp images/base/Containerfile $(IMAGE_WORK)/Containerfile
	ln -f $(IMAGE_ROOTFS) $(IMAGE_WORK)/rootfs.tar
	$(BUILDAH_BUD) -f $(IMAGE_WORK)/Containerfile -t $(LOCAL_BASE_IMAGE) \
		--ignorefile images/base/build.ignore $(IMAGE_WORK)

# Wheels for the base image's Python (read from the root filesystem), downloaded
# on the host so the build step needs no network.
$(IMAGE_WHEELS)/.done: pyproject.toml $(IMAGE_ROOTFS)
	rm -rf $(IMAGE_WHEELS) && mkdir -p $(IMAGE_WHEELS)
	pyver=$$(tar tf $(IMAGE_ROOTFS) | sed -n 's#^\./usr/bin/python\(3\.[0-9]*\)$$#\1#p' | head -n1); \
	platforms=$$(for minor in $$(seq 17 36); do printf -- '--platform manylinux_2_%s_x86_64 ' $$minor; done); \
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --dest $(IMAGE_WHEELS) \
		--only-binary=:all: --implementation cp --python-version $$pyver \
		--platform manylinux2014_x86_64 $$platforms \
		'.[$(IMAGE_EXTRAS)]' pip setuptools \
		$$(sed -n 's/^requires = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '",')
	touch $@

ifeq ($(BASE_IMAGE),$(LOCAL_BASE_IMAGE))
IMAGE_PREREQS := image-base $(IMAGE_WHEELS)/.done
IMAGE_PIP_ARGS := --build-arg WHEELHOUSE=$(IMAGE_WHEELS) --build-arg PIP_NO_INDEX=1
else
IMAGE_PREREQS := $(IMAGE_TOOLS_STAMP)
IMAGE_PIP_ARGS :=
endif

image: $(IMAGE_PREREQS)
	$(BUILDAH_BUD) -f images/sidecar/Dockerfile -t $(IMAGE) \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg EXTRAS=$(IMAGE_EXTRAS) \
		--build-arg VERSION=$(IMAGE_VERSION) --build-arg REVISION=$(IMAGE_REVISION) \
		$(IMAGE_PIP_ARGS) $(IMAGE_BUILD_ARGS) .
	@podman image inspect $(IMAGE) --format 'built {{index .RepoTags 0}}: {{.Size}} bytes, user {{.User}}'


# Builds the image, then runs it as ModelMesh Serving would and drives it from
# outside (tests/images/test_sidecar_image.py). Where images cannot be built
# (not root, no chroot), it says why and skips.
image-test: install
	@reason=$$(bash images/cannot-build.sh) && { echo "image-test skipped: $$reason"; exit 0; }; \
	$(MAKE) --no-print-directory image && \
	$(BUILDAH_BUD) -f images/examples/simple-string/Dockerfile -t $(EXAMPLE_IMAGE) \
		--build-arg SIDECAR_IMAGE=$(IMAGE) images/examples/simple-string && \
	MESH_SIDECAR_IMAGE=$(IMAGE) SIMPLE_STRING_IMAGE=$(EXAMPLE_IMAGE) \
		$(VENV)/bin/pytest -q -p no:cacheprovider tests/images

# Start-to-READY time, memory and load times of the images under podman
# (build them first: `make image-test`).
bench-image: install
	$(PY) bench/image.py --image $(IMAGE) --server-image $(EXAMPLE_IMAGE)
