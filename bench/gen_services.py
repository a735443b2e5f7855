#!/usr/bin/env python3
"""Writes N generated services as Istio YAML for bench/scale.sh.

One service = a ServiceEntry (2 endpoints), a DestinationRule (2 subsets) and a
VirtualService (2 hosts, bound to one Gateway and the mesh, a header rule, a 90/10
split, retries, a timeout). Services are grouped 100 to a namespace (ns-0, ns-1, ...)
and PER_FILE to a file (svc-00000.yaml holds services 0..PER_FILE-1), plus gateway.yaml.

Usage: gen_services.py DIR N SERVICE_PORT GATEWAY_PORT [PER_FILE]
"""

import os
import sys


def service(i, port):
    ns = f"ns-{i // 100}"
    host = f"svc-{i}.{ns}.svc.cluster.local"
    a, b = (i >> 8) & 255, i & 255
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  hosts: [{host}]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints:
  - {{address: 10.{a}.{b}.1, labels: {{version: v1}}}}
  - {{address: 10.{a}.{b}.2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  host: {host}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  hosts: [{host}, svc-{i}.example.com]
  gateways: [istio-system/public, mesh]
  http:
  - name: canary-header
    match:
    - headers: {{x-canary: {{exact: "true"}}}}
    route:
    - destination: {{host: {host}, subset: v2}}
  - name: split
    route:
    - destination: {{host: {host}, subset: v1}}
      weight: 90
    - destination: {{host: {host}, subset: v2}}
      weight: 10
    retries: {{attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}}
    timeout: 10s
---
"""


def gateway(port):
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ["*"]
"""


def main():
    out, n, port, gw_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    per_file = int(sys.argv[5]) if len(sys.argv) > 5 else 100
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gateway.yaml"), "w") as f:
        f.write(gateway(gw_port))
    for start in range(0, n, per_file):
        with open(os.path.join(out, f"svc-{start:05d}.yaml"), "w") as f:
            for i in range(start, min(n, start + per_file)):
                f.write(service(i, port))


if __name__ == "__main__":
    main()
