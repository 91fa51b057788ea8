"""kube-front-proxy: entry point for `mitmdump -s addon/k8s_auth.py --set k8s_auth_config=...`.

Only a thin adapter: the addon lives in the kube_front_proxy package beside this file
(mitmproxy puts this folder on sys.path, so it imports with or without installation).
"""

from kube_front_proxy.addon import K8sAuth

addons = [K8sAuth()]
