"""Paths of the emulated API that many tests request."""

PODS = "/api/v1/namespaces/default/pods"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
EXEC = "/api/v1/namespaces/default/pods/nginx-1/exec"
ATTACH = "/api/v1/namespaces/default/pods/nginx-1/attach"
PORTFORWARD = "/api/v1/namespaces/default/pods/nginx-1/portforward"
