"""Generated: the kubelet's `v1.PodResourcesLister` messages and stubs. Do not edit."""
