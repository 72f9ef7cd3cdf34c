"""Generated Python code for the kubelet's pod-resources API (not Sentinel's own API).

The proto is vendored, as a subset, in `third_party/podresources/v1/api.proto`; the modules in
`v1/` are generated from it by `scripts/gen_podresources.sh` and committed. Do not edit them:
`scripts/check.sh` regenerates them and fails when they differ.
"""
