package node

import (
	"html/template"
	"net"
	"net/http"
	"time"
)

// The status page, in the spirit of nginx-rtmp's /stat: this node, the
// cluster's members, the streams this node handles, and a player for each
// stream (native HLS in Safari and Chromium).
var statusTmpl = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>streamgrid {{.Name}}</title>
<meta http-equiv="refresh" content="10">
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f4f4f4}video{width:480px;background:#000}code{background:#f4f4f4;padding:1px 4px}
</style></head><body>
<h1>streamgrid — {{.Name}} <small>({{.Role}}, up {{.Uptime}})</small></h1>
<h2>Nodes</h2>
<table><tr><th>name</th><th>role</th><th>http</th><th>api</th><th>load</th><th>draining</th></tr>
{{range .Nodes}}<tr><td>{{.Name}}</td><td>{{.Role}}</td><td>{{.HTTP}}</td><td>{{.API}}</td><td>{{.Load}}{{if .Capacity}}/{{.Capacity}}{{end}}</td><td>{{.Draining}}</td></tr>{{end}}
</table>
<h2>Streams</h2>
<pre>{{.Streams}}</pre>
{{if .CachePort}}
<h2>Player</h2>
<p>Stream path: <input id="p" value="live/cam1" size="30"> <button onclick="play()">play</button>
URL: <code id="u"></code></p>
<video id="v" controls muted autoplay playsinline></video>
<script>
function play(){
  var u = location.protocol + "//" + location.hostname + ":{{.CachePort}}/" + document.getElementById("p").value + "/index.m3u8";
  document.getElementById("u").textContent = u;
  var v = document.getElementById("v"); v.src = u; v.play();
}
</script>
{{end}}
</body></html>`))

func (a *apiServer) status(w http.ResponseWriter, r *http.Request) {
	n := a.node
	data := struct {
		Name, Role, Uptime, Streams, CachePort string
		Nodes                                  []nodeView
	}{
		Name: n.name, Role: n.Role, Uptime: time.Since(n.started).Round(time.Second).String(),
		Nodes: a.nodeViews(),
	}
	rec := &bufferWriter{header: http.Header{}}
	a.streams(rec, r)
	data.Streams = string(rec.body)
	if n.cache != nil {
		if _, port, err := net.SplitHostPort(n.cache.HTTPAddr().String()); err == nil {
			data.CachePort = port
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = statusTmpl.Execute(w, data)
}

// bufferWriter captures a handler's body.
type bufferWriter struct {
	header http.Header
	body   []byte
}

func (b *bufferWriter) Header() http.Header { return b.header }
func (b *bufferWriter) Write(p []byte) (int, error) {
	b.body = append(b.body, p...)
	return len(p), nil
}
func (b *bufferWriter) WriteHeader(int) {}
