// Package hlscache is the cache role: the viewers' HTTP server for HLS and
// LL-HLS, CDN-style.
//
// Routing. Every stream has one owner, the origin holding its registry lease
// (bus.Registry.WatchOwners gives node, HTTP address and lease epoch). An
// owner is routable only while gossip shows its node alive; the upstream
// address is the member's gossiped HTTP address. A viewer request
// GET /<stream path>/<file> is forwarded to
// http://<owner>/<stream path>/<file>?<_HLS_msn, _HLS_part, _HLS_skip only>.
// The directives are parsed and rendered by internal/hlsproto, the contract
// origins share (a malformed one is a 400 naming it). When the owner watch
// ends (the bus failed over), it is re-established after 250 ms, then with
// pauses doubling from 0.5 s to 5 s (cenkalti/backoff), and owners no event
// re-announces within a grace period are dropped.
//
// One upstream request per object. Objects are keyed by (owner node, lease
// epoch, path, file, normalised LL-HLS directives), so objects of different
// owners never mix: when a stream moves, its keys change. Concurrent requests
// for one key share one upstream fetch (blocking playlist reloads and
// preload-hinted parts included); the fetch runs detached from the viewers,
// under its own deadline, so a viewer leaving never cancels it for others.
// An answer is stored only when the origin's X-Streamgrid-Origin and
// X-Streamgrid-Epoch headers (hlsproto.HeaderOrigin, HeaderEpoch) match the
// owner asked.
//
// Lifetimes. Segments, parts and init files are immutable and stay in a
// byte-bounded LRU (objects over an eighth of the budget are not kept) for
// as long as they can be asked for: segments and parts for their stream's
// availability window from when they were fetched (2 × the longest media
// playlist's duration + 3 target durations, RFC 8216 §6.2.2), init sections
// until nobody asked for them for that long; a min-heap of deadlines drops
// them (lru.expire) without budget pressure. The LRU counts each body's
// capacity plus a fixed per-entry overhead, bodies are sized exactly
// (readBody), so its byte gauge is what the heap holds. Media playlists are
// kept for at most 250 ms (half a part target when shorter, never past the
// origin's max-age) so a burst of viewers costs one request, and no longer
// than its EXT-X-PRELOAD-HINT part is missing:
// a copy whose hinted part is in the LRU is refetched, since a client that
// reloads right after that part (gohlslib's, without _HLS_msn) would be sent
// back to it; answers to blocking reloads for one (msn, part) for 3 s;
// multivariant playlists per the origin's max-age, capped at 5 s; upstream
// 404s for 500 ms (not for parts, which may appear a moment later).
//
// Failover. When a stream loses its routable owner, the cache keeps treating
// it as live for FailoverWindow: non-blocking playlist requests get the last
// good copy (Cache-Control: no-cache, X-Cache: STALE; held like blocking
// reloads while its hinted part is in the LRU), objects of the old
// owner still in the LRU are served, and everything else is held until a new
// owner is routable (then forwarded) or the request's deadline passes
// (503 with Retry-After). An owner that refuses connections before gossip
// notices it died is handled the same way for playlists. Unknown streams get
// 404 "stream not found".
//
// Access. With a signing key every request must start with /s/<token>/
// (token.go: an HMAC over stream path, expiry and optional client network);
// the prefix is stripped before the lookup, so every viewer shares the
// cached objects, and refusals are 403s counted by reason. Without a key an
// optional Authorize hook decides (401/403). Upstream requests carry the
// cluster's origin secret. Limits: a header timeout, connections per client
// IP (limitListener), upstream fetches per origin, and LL-HLS directives
// bounded by the playlist's window (window.go). Upstream requests carry the
// secret as hlsproto.HeaderAuth.
//
// Player page. GET /<stream path>/ (an empty file name) answers an HTML page
// with a <video> that plays the stream: the browser's native HLS, else a
// small player of ours on Media Source Extensions (player.html, embedded).
// It is served live or not, asks no origin, and uses relative URLs only.
//
// Audience. Every request is noted per stream (viewers.go): a viewer is a
// distinct (address, User-Agent) asking for a playlist within 10 s. The
// table feeds Viewers() and the per-stream series, and forgets a stream
// nobody asked for in 10 s.
//
// Fast path. A plain-HTTP cache without a signing key or an Authorize hook
// accepts its connections itself (fastserver.go): a GET or HEAD of an
// object the LRU holds under a routable owner, with nothing about it that
// only net/http implements (Range, preconditions, a body, Expect, an
// escaped URL, a blocking reload, index.m3u8's negotiation), is answered
// on the connection's own goroutine, status line, headers and body in one
// writev; the first request that is anything else hands the connection,
// its unread bytes replayed, to the net/http server for good. The answers,
// deadlines and counters are net/http's (TestFastPathMatchesNetHTTP).
//
// Code map. cache.go: the Cache (configuration fields, Start, Drain, Close)
// and loops.go its goroutines (server, fast path, owner watch, route
// refresh, LRU expiry); fastserver.go, fastconn.go and fasthead.go the fast
// path (accept loop and hand-over, a connection's requests, the parser). handler.go: the viewers' handler (URL checks in request.go,
// access in access.go and token.go, CORS, writing answers through
// viewerwriter.go and viewerconn.go (headers and body in one write),
// content negotiation in compat.go). serve.go: how a valid
// request finds its answer through routing states, failovers and on-demand
// starts (demand.go). lookup.go: cache keys and the LRU-or-fetch path;
// flight.go: the shared detached fetch; upstream.go: the exchange with the
// origin; object.go and policy.go: what is kept and for how long; lru.go:
// the byte-bounded store; window.go: playlist windows (blocking-reload
// bounds, availability); routetable.go: stream → owner. Lifecycle helpers:
// handlergate.go (requests Close waits for), connlimit.go, metrics.go.
package hlscache
