// Package bus is the cluster's distributed backbone on NATS: the media
// subjects (one per stream, one message per access unit, see internal/media
// for the wire format), the stream registry and ownership leases in JetStream
// KV, the last-GOP request/reply, and an embeddable NATS server node.
//
// Stream paths are encoded into subject tokens and KV keys with EncodePath, so
// '.', '*', '>' and spaces in a path never reach NATS raw.
package bus
