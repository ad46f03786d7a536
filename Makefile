# One command set for CI, pre-commit and people. `make help` lists the targets.
.DEFAULT_GOAL := help
# Every target runs uv through scripts/uv, which finds it (or installs it) the way the scripts do,
# so the targets work where uv is not on PATH. `make UV=/path/to/uv ...` still picks another.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
UV ?= $(ROOT)/scripts/uv

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: uv
uv: ## find uv (or install it) as the scripts do, and print its version
	$(UV) --version

.PHONY: install
install: ## sync the locked workspace (all members, dev and lint groups)
	$(UV) sync --frozen --all-packages

.PHONY: format
format: ## format and autofix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

.PHONY: lint
lint: ## ruff, mypy (strict on libs), import-linter, CRD and gRPC code freshness
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy libs/wharf-api/src libs/wharf-datapath/src libs/wharf-protocol/src libs/wharf-storage/src services/*/src e2e/src bench
	$(UV) run lint-imports
	$(UV) run python -m wharf_api.crdgen deploy/base/crds --check
	$(UV) run python -m wharf_protocol.codegen --check

.PHONY: test
test: ## the README's test command
	./scripts/test --durations=30  # the slowest tests, for the CI log

.PHONY: abuse
abuse: ## the abuse and fuzz suite (e2e/abuse), then its probe counts (tried, passed)
	rm -f .abuse-report.json; \
	WHARF_ABUSE_REPORT=$(CURDIR)/.abuse-report.json $(UV) run pytest -m abuse e2e/abuse -q; \
	status=$$?; \
	if [ -f .abuse-report.json ]; then $(UV) run python -m wharf_e2e.probes .abuse-report.json; fi; \
	exit $$status

.PHONY: crds
crds: ## regenerate deploy/base/crds from the pydantic models
	$(UV) run python -m wharf_api.crdgen deploy/base/crds

.PHONY: protos
protos: ## regenerate the gRPC modules in libs/wharf-protocol from protos/
	$(UV) run python -m wharf_protocol.codegen

.PHONY: images
images: ## build the service images, ghcr.io/wharf-serving/<service>:0.1.0 (docker, podman or buildah)
	./scripts/build-images
