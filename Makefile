# Every command of the project. `make help` lists them.
SHELL := /bin/bash
comma := ,
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
EXTRAS ?= operator,train,serve,dev
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help venv venv-operator generate verify lint test test-unit test-jobs test-operator test-local \
        test-browser test-slow test-production test-cluster control-plane demo bench bench-reconcile bench-grouping \
        bench-serving bench-demo bench-operator-cluster bench-gpu chart images lock clean

help: ## list the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-24s %s\n", $$1, $$2}'

venv: ## create .venv with every extra from uv.lock (uv; reuses uv's download cache)
	@command -v uv >/dev/null || python3 -m pip install -q uv
	@test -x $(PY) || uv venv -q -p 3.11 $(VENV)
	UV_PROJECT_ENVIRONMENT=$(VENV) uv sync -q --locked --compile-bytecode $(foreach x,$(subst $(comma), ,$(EXTRAS)),--extra $(x))

venv-operator: ## a separate venv with only the operator extra (proves the operator needs no ML stack)
	@command -v uv >/dev/null || python3 -m pip install -q uv
	@test -x .venv-operator/bin/python || uv venv -q -p 3.11 .venv-operator
	UV_PROJECT_ENVIRONMENT=.venv-operator uv sync -q --locked --no-editable --extra operator

lock: ## re-resolve uv.lock after a change of pyproject.toml's dependencies (images and venvs install from it)
	uv lock

generate: ## regenerate crds/, the chart's CRD copy and its Argo CD health checks from the API models
	$(VENV)/bin/osmf crds --out crds
	$(VENV)/bin/osmf crds --out charts/osmf/files/crds
	$(VENV)/bin/osmf health-checks --out charts/osmf/health

verify: ## fail when generated files or uv.lock drift, or import boundaries are crossed
	uv lock --check
	$(VENV)/bin/osmf crds --out crds --check
	$(VENV)/bin/osmf crds --out charts/osmf/files/crds --check
	$(VENV)/bin/osmf health-checks --out charts/osmf/health --check
	$(VENV)/bin/lint-imports

lint: verify ## alias of verify

test: ## the default suite: unit, jobs, operator (emulator) and local runtime tiers
	$(PYTEST) -q tests

test-unit: ## pure functions, builders, schemas
	$(PYTEST) -q tests/unit

test-jobs: ## each job entry point end to end on tiny models
	$(PYTEST) -q tests/jobs

test-operator: ## the kopf operator against the KMock emulator
	$(PYTEST) -q tests/operator

test-local: ## the local runtime end to end
	$(PYTEST) -q tests/local

test-browser: ## the campaign report in headless chromium
	$(PYTEST) -q -m browser tests

test-slow: ## longer end-to-end runs (default synth world)
	$(PYTEST) -q -m slow tests

test-production: ## the h100 example on production-shaped random models: torchrun, FSDP, S3 multipart, kill/resume, memory
	OMP_NUM_THREADS=1 $(PYTEST) -q -s -m production tests/production

control-plane: ## build kube-apiserver, controller-manager, scheduler, kubectl, etcd, KWOK, helm from the Go proxy (cached)
	hack/build-control-plane.sh

test-cluster: ## the real control plane tier (kube-apiserver, etcd, KWOK H100 nodes)
	$(PYTEST) -q -m cluster tests/cluster

demo: ## synthetic world → the whole pipeline on this machine → report
	$(VENV)/bin/osmf demo

bench-reconcile: ## reconcile-core and emulator-operator throughput
	$(PY) bench/reconcile.py

bench-grouping: ## batched grouping vs a naive scikit-learn loop
	$(PY) bench/grouping.py

bench-serving: ## assignment and HTTP latency vs a naive baseline
	$(PY) bench/serving.py

bench-demo: ## wall time of osmf demo vs its 5-minute budget
	$(PY) bench/demo.py

bench-operator-cluster: ## 200 AudienceGroupings on the real control plane
	$(PY) bench/operator_cluster.py

bench-gpu: ## H100 acceptance: the real jobs at the example's settings and SD1.5 rendering beside plain baselines (needs a GPU)
	bash bench/gpu/acceptance.sh

bench: bench-reconcile bench-grouping bench-serving bench-demo ## every CPU benchmark

chart: ## render the Helm chart with the locally built helm
	$$(hack/build-control-plane.sh --print-env | sed -n 's/^OSMF_HELM=//p') template osmf charts/osmf

images: ## build the three images as osmf/<name>:<appVersion> with docker, podman or buildah (whichever works)
	hack/build-images.sh

clean: ## remove local artifacts and caches
	rm -rf osmf-artifacts test-artifacts .pytest_cache
