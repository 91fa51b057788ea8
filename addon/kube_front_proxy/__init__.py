"""kube-front-proxy: an authenticating front proxy for kube-apiserver, as a mitmproxy addon."""
