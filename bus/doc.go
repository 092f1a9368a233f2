// Package bus is the cluster's distributed backbone on NATS: the media
// subjects (one per stream, one message per access unit, see internal/media
// for the wire format), the stream registry and ownership leases in JetStream
// KV (registry.go opens the buckets; each record has a file: stream_info.go,
// lease.go for owners and camera leases, playlist_state.go), node liveness
// (liveness.go) and the bus nodes' death notices of a node whose connection
// closed (gone.go), the last-GOP request/reply, on-demand camera signals,
// and an embeddable NATS server node.
//
// Roles move packets through the Media interface (media.go), which has two
// implementations chosen when the node starts: NATSMedia, where every
// packet goes on the stream's media subject (Publisher, Subscription), and
// Hub (hub.go), for an edge and an origin in one process, where a packet
// reaches the process's subscribers by a function call and goes on NATS
// only for subscribers elsewhere.
//
// Node liveness (liveness.go): every origin and edge sends a heartbeat on
// AliveSubject; the registry's owner records, stream records and camera
// leases name a node instance and hold while its heartbeats do, written on
// change only. One Liveness per process, shared by its roles, with the
// roles in the heartbeat (not a subject per role): the all-in-one's origin
// and edge share one node name, and two independent heartbeats under that
// name with two instances would make every peer take the node for one
// that restarts over and over, killing both roles' records. Sharing also
// halves the heartbeats of an all-in-one; the roles field lets origins
// rank only live origins (NodesWith(RoleOrigin)) and edges only live edges.
//
// Stream paths are encoded into subject tokens and KV keys with EncodePath, so
// '.', '*', '>' and spaces in a path never reach NATS raw.
package bus
