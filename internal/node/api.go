package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/edge"
	"github.com/streamgrid/streamgrid/internal/version"
)

// apiServer is the per-node REST API, /metrics, /healthz and the console.
type apiServer struct {
	node    *Node
	Address string

	ln      net.Listener
	srv     *http.Server
	cluster clusterView
	snaps   snapshotter
}

func (a *apiServer) start() error {
	ln, err := net.Listen("tcp", a.Address)
	if err != nil {
		return err
	}
	a.cluster.n = a.node
	if err := a.cluster.start(); err != nil {
		ln.Close()
		return err
	}
	a.snaps.nc = a.node.nc
	a.snaps.ffmpeg = a.node.Config.Origin.Transcode.FFmpeg
	a.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.node.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/streams", a.streams)
	mux.HandleFunc("GET /v1/streams/{path...}", a.stream) // and .../snapshot.jpg
	mux.HandleFunc("DELETE /v1/streams/{path...}", a.kick)
	mux.HandleFunc("GET /v1/sources", a.sources)
	mux.HandleFunc("GET /v1/nodes", a.nodes)
	mux.HandleFunc("GET /{$}", a.status)
	// Go profiles, for finding where a busy node spends its time.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	a.srv = &http.Server{
		Handler:           a.guard(mux),
		ReadHeaderTimeout: 5 * time.Second,
		// Bounds a whole request, body included. A ReadTimeout also ends a
		// handler's context when it passes, and a CPU profile or trace runs
		// for the seconds it was asked (pprof refuses more than WriteTimeout),
		// so both are the same. A long-lived answer (an event stream) must
		// move its deadlines forward with http.ResponseController.
		ReadTimeout:    2 * time.Minute,
		WriteTimeout:   2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
	}
	go func() { _ = a.srv.Serve(ln) }()
	return nil
}

func (a *apiServer) addr() net.Addr { return a.ln.Addr() }

func (a *apiServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
	a.cluster.close()
	a.snaps.close()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// healthz answers 200 while the node can do its job: its NATS server runs and
// its bus connection is up. A draining node answers 503 with status
// "draining", so a load balancer stops sending it new work.
func (a *apiServer) healthz(w http.ResponseWriter, _ *http.Request) {
	n := a.node
	checks := map[string]string{}
	ok := true
	if n.server != nil {
		if ns := n.server.NATS(); ns != nil && ns.Running() {
			checks["nats_server"] = "ok"
		} else {
			checks["nats_server"] = "down"
			ok = false
		}
	}
	if n.nc != nil {
		if n.nc.IsConnected() {
			checks["bus"] = "ok"
		} else {
			checks["bus"] = n.nc.Status().String()
			ok = false
		}
	}
	if n.gossip != nil {
		checks["gossip_members"] = strconv.Itoa(len(n.gossip.Members()))
	}
	if t := n.transcodeCheck(); t != "" {
		checks["transcode"] = t
	}
	code, status := http.StatusOK, "ok"
	if !ok {
		code, status = http.StatusServiceUnavailable, "unhealthy"
	}
	draining := n.draining.Load()
	if draining {
		code, status = http.StatusServiceUnavailable, "draining"
	}
	writeJSON(w, code, map[string]any{
		"status": status, "node": n.name, "role": n.Role, "draining": draining,
		"uptime": time.Since(n.started).Round(time.Second).String(), "checks": checks,
	})
}

// streams answers every stream of the cluster (from the registry, joined
// with the nodes' statistics) and this node's own per-role detail under
// "edge", "origin", "cache", "viewers" and "sources". ?local=1 answers only
// the detail.
func (a *apiServer) streams(w http.ResponseWriter, r *http.Request) {
	local := a.node.localStats()
	if r.URL.Query().Get("local") != "" {
		writeJSON(w, http.StatusOK, local)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Streams []streamRecord `json:"streams"`
		localStats
	}{a.cluster.records(r.Context(), requestHost(r), ""), local})
}

// requestHost is the host name the client used to reach the API.
func requestHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		return h
	}
	if r.Host != "" {
		return r.Host
	}
	return "localhost"
}

// stream answers GET /v1/streams/<path> (the stream's record) and
// GET /v1/streams/<path>/snapshot.jpg. A stream whose last path segment is
// "snapshot.jpg" has its record read as that of its parent's snapshot.
func (a *apiServer) stream(w http.ResponseWriter, r *http.Request) {
	p := strings.Trim(r.PathValue("path"), "/")
	if sp, ok := strings.CutSuffix(p, "/snapshot.jpg"); ok {
		a.snapshot(w, r, sp)
		return
	}
	if err := bus.ValidatePath(p); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	recs := a.cluster.records(r.Context(), requestHost(r), p)
	if len(recs) == 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "stream not found: " + p})
		return
	}
	writeJSON(w, http.StatusOK, recs[0])
}

// snapshot answers a JPEG of the stream's latest keyframe; ?width=N scales it.
func (a *apiServer) snapshot(w http.ResponseWriter, r *http.Request, p string) {
	result := "unavailable"
	defer func() { a.node.m.snapshots.WithLabelValues(result).Inc() }()
	if err := bus.ValidatePath(p); err != nil {
		result = "bad_request"
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	width := 0
	if v := r.URL.Query().Get("width"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < minSnapshotW || n > maxSnapshotW {
			result = "bad_request"
			writeJSON(w, http.StatusBadRequest, map[string]string{
				"error": "width must be an integer from " + strconv.Itoa(minSnapshotW) + " to " + strconv.Itoa(maxSnapshotW)})
			return
		}
		width = n &^ 1 // even, as encoders want
	}
	if a.node.registry == nil || a.node.nc == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "this node has no bus connection (a bus node): ask another node"})
		return
	}
	if !a.cluster.has(p) {
		result = "not_found"
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "stream not found: " + p})
		return
	}
	jpeg, err := a.snaps.get(r.Context(), p, width)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		a.node.Log.Debug("snapshot failed", "stream", p, "err", err)
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no snapshot of " + p + ": " + err.Error()})
		return
	}
	result = "ok"
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(int(snapshotTTL/time.Second)))
	w.Header().Set("Content-Length", strconv.Itoa(len(jpeg)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(jpeg)
	}
}

// sources answers the camera pulls of every edge of the cluster: each
// configured source as each edge sees it (held: that edge pulls it).
func (a *apiServer) sources(w http.ResponseWriter, r *http.Request) {
	type source struct {
		Node string `json:"node"`
		edge.SourceStatus
	}
	out := []source{}
	for _, st := range a.cluster.gather(r.Context()) {
		for _, s := range st.Sources {
			out = append(out, source{Node: st.Node, SourceStatus: s})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Node < out[j].Node
	})
	writeJSON(w, http.StatusOK, out)
}

func (a *apiServer) kick(w http.ResponseWriter, r *http.Request) {
	p := strings.Trim(r.PathValue("path"), "/")
	if err := bus.ValidatePath(p); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if a.node.edge == nil || !a.node.edge.Kick(p) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no publisher on this node for " + p})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"kicked": p})
}

type nodeView struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Gossip   string `json:"gossip"`
	HTTP     string `json:"http,omitempty"`
	API      string `json:"api,omitempty"`
	Load     int    `json:"load"`
	Capacity int    `json:"capacity,omitempty"`
	Draining bool   `json:"draining"`
	Cache    string `json:"cache,omitempty"`
	Version  string `json:"version,omitempty"`
	Self     bool   `json:"self,omitempty"`
	// Transcode is an origin's transcoding capacity, from its gossip record.
	Transcode *transcodeView `json:"transcode,omitempty"`
}

// transcodeView is an origin's gossiped transcoding capacity, spelled out.
type transcodeView struct {
	Encoders string `json:"encoders"` // "nvenc_h264+nvenc_hevc+x264+x265+nvdec", "none"
	GPU      int    `json:"gpu_slots"`
	GPUFree  int    `json:"gpu_free"`
	CPU      int    `json:"cpu_slots"`
	CPUFree  int    `json:"cpu_free"`
}

func (a *apiServer) nodeViews() []nodeView {
	if a.node.gossip == nil {
		// A bus node does not gossip: itself only.
		return []nodeView{{Name: a.node.name, Role: a.node.Role, Version: version.String(), Self: true}}
	}
	var out []nodeView
	for _, m := range a.node.gossip.Members() {
		out = append(out, nodeView{
			Name: m.Name, Role: m.Meta.Role, Gossip: m.Addr, HTTP: m.Meta.HTTP, API: m.Meta.API,
			Load: m.Meta.Load, Capacity: m.Meta.Capacity, Draining: m.Meta.Draining,
			Cache: m.Meta.Cache, Version: m.Meta.Version, Self: m.Name == a.node.name,
		})
		if t := m.Meta.Transcode; t != nil {
			out[len(out)-1].Transcode = &transcodeView{Encoders: t.Encoders.String(),
				GPU: t.GPU, GPUFree: t.GPUFree, CPU: t.CPU, CPUFree: t.CPUFree}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (a *apiServer) nodes(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.nodeViews())
}

// transcodeCheck summarises the origin's encoder capabilities and transcode
// slots for /healthz (checks.transcode); "" when no ladder is configured.
func (n *Node) transcodeCheck() string {
	if n.origin == nil {
		return ""
	}
	st := n.origin.Capabilities()
	if !st.Enabled {
		return ""
	}
	c := st.Capabilities
	yes := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}
	out := fmt.Sprintf("ffmpeg=%s x264=%s x265=%s nvenc_h264=%s nvenc_hevc=%s cuda=%s gpus=%d gpu_sessions=%d/%d cpu_slots=%d/%d",
		c.FFmpeg, yes(c.X264), yes(c.X265), yes(c.NVENCH264), yes(c.NVENCHEVC), yes(c.CUDA), c.GPUs,
		st.GPUInUse, st.GPUSessions, st.CPUInUse, st.CPUSlots)
	for _, l := range st.Ladders {
		if l.Refused != "" {
			out += fmt.Sprintf(" ladder[%s]=refused(%s)", l.Match, l.Refused)
		} else {
			out += fmt.Sprintf(" ladder[%s]=%s", l.Match, l.Encoder)
		}
	}
	return out
}
