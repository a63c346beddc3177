// Package kind runs edgefault's fleets on real kind clusters
// (sigs.k8s.io/kind), built and started offline: no registry is needed.
//
// It has three parts, each usable on its own:
//
//   - Engine: a Docker engine to run kind's node containers on. Where none
//     is running it starts Debian's dockerd, recorded in the ledger so that
//     edgefault cleanup stops it, and where this machine's capability
//     bounding set lacks CAP_SYS_RESOURCE (so `docker run --privileged`
//     fails) it registers a runtime wrapper that drops that one capability
//     before calling runc (RunRuntimeWrapperIfInvoked).
//   - BuildNodeImage: a kind node image made from a Debian rootfs
//     (debootstrap), kind's own base files (from the kind Go module), the
//     Kubernetes binaries edgefault setup --kind builds, and the control
//     plane's images preloaded into its containerd store. Cached by the
//     hash of everything pinned.
//   - Cluster: a kind cluster made through kind's Go library with the
//     patches this kind of host needs (found by probing, not assumed),
//     flannel for its pod network (kindnetd cannot be fetched offline),
//     and every cluster recorded in the ledger before creation.
//
// Images (the edgeguard runtime, the control plane's) are written as
// archives that both docker load and containerd's import take (WriteImage),
// so nothing goes through a registry.
package kind
