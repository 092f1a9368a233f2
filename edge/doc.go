// Package edge is the ingest role: it accepts RTSP publishers (ANNOUNCE and
// RECORD over TCP or UDP) and RTMP publishers (including enhanced RTMP with
// HEVC), pulls RTSP cameras, and publishes every stream on the bus. With a
// certificate it also accepts RTSPS (TCP only) and RTMPS on their own ports:
// the same handlers behind a TLS listener.
//
// All three ingest paths feed one normaliser per live stream (stream.go,
// normalizer.go), so the bus sees the same thing whatever the source:
//
//   - one packet per access unit; H264/H265 in AVCC framing with access unit
//     delimiters and filler removed and the parameter sets (VPS/SPS/PPS) in
//     front of every keyframe that lacks them; AAC raw frames; Opus packets;
//   - timestamps on one monotonic 64-bit timeline per publication
//     (generation), in each track's clock rate (90 kHz video, the sample rate
//     for AAC, 48 kHz Opus), starting at 0 with the first video keyframe;
//     RTMP's wrapping 32-bit milliseconds are unwrapped first; a source jump
//     of more than 10 s against the wall clock (or backwards by more than 1 s)
//     is re-anchored on the wall clock and flagged as a discontinuity;
//   - video DTS derived from the bitstream (RTSP) or taken from the container
//     (RTMP), and strictly increasing; nothing before the first video
//     keyframe (audio included); units over 8 MiB or 50 NAL units dropped and
//     counted;
//   - a sequence number per unit and the edge's wall clock at receipt.
//
// Packets leave through Edge.Media (bus.Media): NATS by default, the
// in-process bus.Hub when an origin runs in the same process.
//
// Each live stream is registered in the bus registry (bus.Registry
// ClaimStream, released at the end). The record names the edge's liveness
// instance and is never renewed: it holds while the edge's heartbeats do
// (bus.Liveness, shared with the process's other roles or the edge's own),
// and is rewritten only on change (new parameter sets, a new instance after
// this edge's liveness lapsed: watchLiveness in edge.go). A second
// publisher on a live path is refused; a record left by a dead edge is
// removed first. The edge keeps each stream's last GOP (and the complete
// one before it, see internal/gop) and answers bus.FetchGOP with them.
//
// Camera pulls are leased (bus.Registry AcquireSource): every edge may list
// the same cameras, one pulls each, and another takes over when it dies
// (source.go builds the pullers, source_lease.go takes, holds and hands
// over the lease, source_pull.go is the RTSP client). A pull that fails
// reconnects after an exponential backoff with full jitter
// (Source.BackoffMin, BackoffMax); a listener whose Accept fails (out of
// file descriptors) retries after 5 ms, doubling up to 1 s (retry.go).
// Camera credentials never reach logs, errors or the status.
//
// Every audio packet is flagged as a keyframe (each frame decodes on its
// own); video packets are keyframes at IDR (H264) or IRAP (H265: IDR, CRA)
// access units.
//
// RTMP: gortmplib does the handshake, the connect/publish commands and the
// track detection, which starts as soon as the sequence headers are in
// (rtmpProbe) instead of after gortmplib's 2 s analyze period. The media
// after that are read by the edge itself (rtmpConn, internal/rtmpchunk):
// coded H264/H265 and AAC frames go from the chunk stream to the stream
// without a copy or an allocation per chunk; every other message still goes
// through gortmplib's decoder.
package edge
