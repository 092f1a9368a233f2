// Package origin is the origin role: it claims live streams from the
// registry within its capacity, subscribes to their packets on the bus and
// packages them as HLS (Low-Latency HLS by default, fMP4 or MPEG-TS
// selectable), served over HTTP to cache nodes.
//
// # Muxers
//
// The fMP4 variants (lowLatency, fmp4) are packaged by streamgrid's own
// muxer, internal/llhls (HLSConfig.Muxer "builtin", the default): it writes
// each part once, with internal/fmp4w, into one exact-size slice, and serves
// a segment as its parts back to back. MPEG-TS, and every variant with
// HLSConfig.Muxer "gohlslib", use gohlslib's Muxer. Both sit behind
// hlsMuxer (instance.go) and behave the same towards the origin: the same
// file names and playlists (gohlslib's playlist package parses both, see
// view.go), a preload-hint GET that blocks until the part is complete (404
// once closed), nothing written for a name the muxer does not hold
// (probeWriter). internal/llhls's tests compare its every answer with
// gohlslib's, byte for byte, on the same input. "gohlslib" below means
// either muxer where the text describes that shared behaviour.
//
// # Ownership
//
// A stream is packaged by exactly one origin: the one its owner record in
// the registry names. The record is written when ownership changes (claim,
// take-over, release), never renewed: it holds while the origin's node
// liveness does (bus.Liveness: a heartbeat every NodeTTL/4 on core NATS).
// A newer owner seen on the owner watch, the record removed, a
// playlist-state write refused as fenced (ErrFenced), or the origin's own
// liveness lapsing (no heartbeat the bus confirmed for NodeTTL: paused,
// starved, cut off) stops the packaging of that stream at once; HTTP
// answers also stop the moment the liveness lapses.
//
// A new stream: the origin its path ranks first among the live origins
// (rendezvous hashing) tries to create its record after a delay that grows
// with its load; the others follow in rank order, a NodeTTL apart, while
// nobody has (in case those before are full or dead); the registry's
// create-if-absent arbitrates ties. The record is written once: its create
// revision is the epoch. A dead node's streams (no heartbeat for its
// NodeTTL, or its connection's death notice): each survivor takes at once
// those whose path ranks it first among the live origins, by
// compare-and-set on the record with the epoch + 1; the others follow in
// rank order, a NodeTTL apart. An origin has its share of
// clusterClaimsInFlight claims under way at most. A new owner fetches
// the last GOP from the edge and feeds it first, so packaging starts
// without waiting for the next keyframe.
//
// # Continuity across muxer instances
//
// gohlslib numbers every muxer's segments from zero (Low-Latency: seven
// EXT-X-GAP placeholders, then segment 7) and knows nothing about
// discontinuities, but a stream's muxer is re-created whenever the publisher
// reconnects (a new generation), the edge flags a timestamp discontinuity,
// writes keep failing, the stream idles, or another origin takes it over.
// Viewers must never see the playlist go backwards, so the origin never
// serves gohlslib's playlists as they are:
//
//   - Each muxer instance gets an offset: global MSN = local MSN + offset.
//     The offset of a new instance is chosen so that its first real segment
//     follows the last media sequence number the stream has used so far
//     (including a partially built Low-Latency segment whose parts were
//     already listed). Its gap placeholders then cover the previous
//     instance's last segments.
//   - One watcher goroutine per instance keeps an immutable snapshot of the
//     instance's playlists, refreshed each time a Low-Latency part completes
//     (it waits on gohlslib's own preload-hint request) or by polling for
//     the other variants. HTTP requests are answered from these snapshots,
//     never by blocking inside gohlslib, whose waits ignore request
//     contexts.
//   - The served media playlist is the newest instance's window, renumbered,
//     with its gap placeholders replaced by the previous instances' real
//     segments where those are still held, EXT-X-DISCONTINUITY (and, for
//     fMP4, a fresh EXT-X-MAP) on the first segment of every later instance,
//     and EXT-X-DISCONTINUITY-SEQUENCE computed from the discontinuities
//     still in the window. Delta updates (_HLS_skip) never skip across a
//     discontinuity.
//   - Each muxer keeps SegmentCount+2 segments more than the playlist lists
//     (the view shows the newest SegmentCount), and a replaced instance
//     stays open, unfed, until its last segment has been out of the playlist
//     for SegmentCount+2 target durations: a segment or part stays fetchable
//     for its duration plus the playlist's after it leaves (RFC 8216
//     §6.2.2). File names carry gohlslib's per-instance random prefix; a
//     request is routed to the instance whose prefix matches.
//   - Blocking playlist requests (_HLS_msn, _HLS_part) are evaluated against
//     the merged, renumbered view, so a request for the next instance's first
//     segment simply waits for it. Every wait is bounded (3 target durations
//     plus a part); past it the origin answers 503.
//   - A source muxer of a path whose keyframe interval is known (measured
//     on an earlier muxer of the stream, or read from the playlist state)
//     declares its target duration up front and lists its first parts
//     before its first segment is complete; EXT-X-DISCONTINUITY and its
//     EXT-X-MAP then come before those parts (view.tagParts). A GOP longer
//     than declared makes it refuse writes (llhls.ErrTargetExceeded)
//     before a segment outgrows the target: it is replaced, and the next
//     muxer learns the interval from its first segment. An instance
//     retired before its first segment hands its discontinuity number on.
//   - The next media sequence number and the discontinuity count are written
//     to the registry about once per second (fenced by the lease epoch). A
//     running owner writes a small reserve ahead of what it has produced, so
//     an owner that dies between two writes never makes its successor reuse
//     a number viewers have already seen. A new owner continues from the
//     stored state with a discontinuity.
//
// Consumers must pass these playlists through byte for byte: gohlslib's
// playlist package keeps only one EXT-X-MAP per playlist, so parsing and
// re-marshalling a playlist that spans two instances would lose the second
// initialization section.
//
// # The compatible view
//
// compat.m3u8 and compat_<media playlist> serve the same segments without
// Low-Latency tags or leading gap placeholders, once three segments are
// listed, for players without LL-HLS (Chromium's built-in player, VLC 3);
// see compat.go and docs/players.md.
//
// # ABR ladders (transcoding)
//
// With Transcode.Ladders configured, Start probes ffmpeg once
// (transcode.Detect, bounded by DetectTimeout) and resolves every ladder's
// encoder (transcode.Choose); Capabilities reports the result and the
// streamgrid_origin_transcode_capability gauges expose it. A stream whose
// path matches a ladder (path.Match, first match wins) is claimed only when
// the ladder has a usable encoder and one of the origin's slots for it is
// free (GPUSessions for NVENC, CPUSlots for x264); otherwise the origin
// leaves it unowned for another origin, logs that once per stream, counts it
// in streamgrid_origin_transcode_refused_total{reason} (no_gpu, no_encoder,
// no_slot) and lists it in Streams with Refused set.
//
// A transcoded stream keeps its source instances (the passthrough rendition,
// and the numbering that is persisted) and gets one more set of muxer
// instances per rendition, fed by one transcode.Transcoder (one ffmpeg)
// from the same packets. The transcoder starts once the source GOP is known
// (two keyframes), at a keyframe where the source muxer starts a segment;
// its keyframes follow the source GOP and its output keeps the input's
// timestamps, so every rendition's muxer cuts segments at the same
// timestamps as the source's, and each rendition instance is offset so that
// those segments carry the same media sequence numbers (and the same
// EXT-X-PROGRAM-DATE-TIME) as the source's. A transcoder restart retires
// every rendition's instance: the next one starts after a discontinuity.
// A rendition's media playlists are served as r<name>_<gohlslib name>
// (r720p_video1_stream.m3u8; its segments keep gohlslib's unique per-muxer
// prefix), and index.m3u8 becomes a master playlist
// (transcode.MasterPlaylist) listing the source (with Ladder.Passthrough)
// and every rendition with BANDWIDTH and AVERAGE-BANDWIDTH as gohlslib
// measures them, RESOLUTION, CODECS and FRAME-RATE, and per rendition an
// audio group when the variant carries audio in its own playlist. It is
// answered once every rendition has content (bounded; past the bound with
// those that have).
//
// # Placement in a mixed cluster
//
// With Gossip set, the origin announces its transcode record (usable
// encoders, GPU and CPU slots and how many are free; transcodeRecord) and
// reads the other origins' records when it schedules a claim: an origin
// that is not a first choice for a stream (a ladder: NVENC for its codecs
// and a free GPU slot; passthrough: no GPU) waits one LeaseTTL longer when
// a peer is (placement.go, docs/cluster.md). Admission stays local, so
// stale gossip only delays. A ladder's Fallback (else Transcode.Fallback)
// decides whether a CPU origin may take it at all. Transcode.Capabilities
// replaces the probe, for tests and pinned deployments.
//
// # HTTP
//
// GET /<stream path>/<file>, where file is a name gohlslib produces
// (index.m3u8, video1_stream.m3u8, <prefix>_video1_seg12.mp4, ...) or a
// rendition's media playlist (r<name>_video1_stream.m3u8), and
// GET /_streams for a JSON list of the streams held. Every response about a
// stream carries X-Streamgrid-Origin and X-Streamgrid-Epoch, so a cache never
// mixes objects of two owners. The headers and the delivery directives
// (_HLS_msn, _HLS_part, _HLS_skip) are the contract of internal/hlsproto,
// shared with the caches; a malformed directive is answered 400.
//
// # Lifecycle
//
// Start listens, opens the registry watches and starts claiming; Drain
// gives every lease up and stops claiming, returning an error when its
// context ends before every stream is released; Close releases what is
// left and waits for every goroutine.
//
// # Code map
//
// Origin (origin.go) holds the streams; the claimer (claimer.go) decides
// which to claim, and when (placement.go: which origin of a mixed cluster
// should go first); config.go holds HLSConfig, its defaults and its rules;
// reload.go changes settings while running. One stream is a stream
// (stream.go: its run goroutine) made of small parts, one a file:
//
//   - ownership (lease.go): the owner record, its release (the registry
//     recovers a write whose reply was lost, bus.Registry.RecoverOwner) and
//     the fenced playlist-state writes, sparse: a reserve of
//     stateReserveSpan ahead of what was shown;
//   - intake (intake.go): the stream's packet queue, a media.Queue: bounded,
//     it never blocks the subscription, and after a drop video resumes at
//     the next keyframe (media.FlagKeyframe, set once by the edge);
//   - packager (packager.go): feeds packets to the current muxer instance
//     and decides when a new one starts;
//   - muxerSet (muxerset.go): every instance of the stream, its numbering
//     base and the change signal HTTP requests wait on;
//   - requestDemand (demand.go): when caches last asked, which paces the
//     instance watchers;
//   - transcodeRun (rendition.go): the transcoder and the rendition sets;
//     its output reaches the run goroutine through another media.Queue.
//
// instance.go is one muxer instance and its watcher, view.go the merged
// media playlist, master.go the master playlist of a transcoded stream,
// handler.go the playlist requests, objects.go the segment and part
// requests, compat.go the compatible view.
package origin
