// Package deploy tests the deployment kit under deploy/: the Helm chart (helm lint and
// kubeconform with the schemas in deploy/helm/schemas), the compose file (the
// compose-spec JSON schema, promtool) and the node configurations (fail closed). The
// tools come from .ci/setup; a test that needs a missing one skips unless
// GOLDPROXY_E2E=1, when it fails.
package deploy
