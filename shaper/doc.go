// Package shaper applies an impairment (rate, delay and jitter, loss,
// outage; the model is package impair) to one link in one network
// namespace through netlink, and removes it again. Wherever the link's peer
// is known, it impairs the link at the peer, so the node sees a bad wire
// rather than local congestion. Rate is tbf or htb, on an ifb for traffic a
// device receives. Delay, jitter and loss use a netem leaf where the kernel
// has netem (BackendNetem). Where it has not (BackendFallback), loss is an
// nftables drop rule and delay is an NFQUEUE delayer helper process (see
// RunHelperIfInvoked and WithHelper). Apply replaces an impairment without
// ever leaving the link unshaped, and Clear restores the link as it was.
//
// Every qdisc, ifb device, nft table and helper process is recorded in the
// ledger before it is created (a helper before it runs), with a state file
// per link, so edgefault cleanup (RestoreAll, then the ledger's sweep with
// Removers) can remove it all even after a crash. Probe and Diagnose report
// what the kernel supports (edgefault doctor). docs/shaping.md explains
// where and how each effect is applied and how accurate it is;
// docs/impairments.md explains how to add an effect.
package shaper
