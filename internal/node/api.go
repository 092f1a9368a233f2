package node

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/streamgrid/streamgrid/bus"
)

// apiServer is the per-node REST API, /metrics, /healthz and the status page.
type apiServer struct {
	node    *Node
	Address string

	ln  net.Listener
	srv *http.Server
}

func (a *apiServer) start() error {
	ln, err := net.Listen("tcp", a.Address)
	if err != nil {
		return err
	}
	a.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.node.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/streams", a.streams)
	mux.HandleFunc("DELETE /v1/streams/{path...}", a.kick)
	mux.HandleFunc("GET /v1/nodes", a.nodes)
	mux.HandleFunc("GET /{$}", a.status)
	// Go profiles, for finding where a busy node spends its time.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	a.srv = &http.Server{Handler: a.guard(mux), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	go func() { _ = a.srv.Serve(ln) }()
	return nil
}

func (a *apiServer) addr() net.Addr { return a.ln.Addr() }

func (a *apiServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// healthz answers 200 while the node can do its job: its NATS server runs and
// its bus connection is up.
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
	writeJSON(w, code, map[string]any{
		"status": status, "node": n.name, "role": n.Role,
		"uptime": time.Since(n.started).Round(time.Second).String(), "checks": checks,
	})
}

func (a *apiServer) streams(w http.ResponseWriter, _ *http.Request) {
	n := a.node
	out := map[string]any{}
	if n.edge != nil {
		out["edge"] = n.edge.Streams()
	}
	if n.origin != nil {
		out["origin"] = n.origin.Streams()
	}
	if n.cache != nil {
		out["cache"] = n.cache.Routes()
	}
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
	Draining bool   `json:"draining,omitempty"`
}

func (a *apiServer) nodeViews() []nodeView {
	if a.node.gossip == nil {
		return nil
	}
	var out []nodeView
	for _, m := range a.node.gossip.Members() {
		out = append(out, nodeView{
			Name: m.Name, Role: m.Meta.Role, Gossip: m.Addr, HTTP: m.Meta.HTTP, API: m.Meta.API,
			Load: m.Meta.Load, Capacity: m.Meta.Capacity, Draining: m.Meta.Draining,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (a *apiServer) nodes(w http.ResponseWriter, _ *http.Request) {
	if a.node.gossip == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this node does not gossip"})
		return
	}
	writeJSON(w, http.StatusOK, a.nodeViews())
}
