package node

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
)

// The console, at the API's "/": every stream of the cluster with its
// thumbnail (snapshot.jpg), codecs, resolution, frame and bit rates, uptime,
// edge, owning origin, viewers, request rate and drops; every node with its
// role, load, capacity, draining state and version; the camera pulls. It
// never reloads: its script polls /v1/streams, /v1/nodes and /v1/sources
// every 2 s and updates the page in place. A click on a stream plays it in a
// frame holding the stream's player page at a cache of the cluster (the
// cache's own player: native HLS or its MSE player), which reports its state
// back. Nothing is loaded from elsewhere.
//
//go:embed console.html
var consoleHTML string

var consoleTmpl = template.Must(template.New("console").Parse(consoleHTML))

func (a *apiServer) status(w http.ResponseWriter, _ *http.Request) {
	var buf bytes.Buffer
	if err := consoleTmpl.Execute(&buf, struct{ Name string }{a.node.name}); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(buf.Bytes())
}
