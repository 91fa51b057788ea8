"""kube-front-proxy-login: kubectl's credential plugin."""
