package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testmedia"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPI(t *testing.T) {
	n := startNode(t, allInOneConfig(t), RoleRun)
	a := n.Addrs()
	api := "http://" + a.API

	code, body := httpGet(t, api+"/healthz")
	if code != 200 || !strings.Contains(body, `"status": "ok"`) {
		t.Fatalf("healthz: %d %s", code, body)
	}
	cam := &testmedia.Camera{URL: "rtsp://" + a.RTSP + "/live/api"}
	if err := cam.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()

	var streams struct {
		Edge   []struct{ Path string } `json:"edge"`
		Origin []struct{ Path string } `json:"origin"`
		Cache  map[string]struct{ Node string }
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, body = httpGet(t, api+"/v1/streams")
		if err := json.Unmarshal([]byte(body), &streams); err != nil {
			t.Fatal(err)
		}
		if len(streams.Edge) == 1 && len(streams.Origin) == 1 && streams.Cache["live/api"].Node == "aio" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams: %s", body)
		}
	}
	if code, body = httpGet(t, api+"/v1/nodes"); code != 200 || !strings.Contains(body, `"role": "run"`) {
		t.Fatalf("nodes: %d %s", code, body)
	}
	_, metrics := httpGet(t, api+"/metrics")
	for _, m := range []string{"streamgrid_edge_received_packets_total", `streamgrid_edge_stream_received_bytes_total{node="aio",protocol="rtsp",role="edge",stream="live/api"}`, "streamgrid_origin_", "streamgrid_cache_", `go_goroutines{node="aio",role="run"}`,
		`streamgrid_build_info{goversion="go`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if code, body = httpGet(t, api+"/"); code != 200 || !strings.Contains(body, "v1/streams") || strings.Contains(body, "http-equiv") {
		t.Fatalf("console: %d %.300s", code, body)
	}
	// The cluster's view: the record of the stream, by list and by path.
	var all struct {
		Streams []streamRecord `json:"streams"`
	}
	_, body = httpGet(t, api+"/v1/streams")
	if err := json.Unmarshal([]byte(body), &all); err != nil || len(all.Streams) != 1 {
		t.Fatalf("/v1/streams: %v %s", err, body)
	}
	rec := all.Streams[0]
	if rec.Path != "live/api" || rec.Edge != "aio" || rec.Protocol != "rtsp" || rec.Width == 0 || len(rec.Codecs) == 0 ||
		rec.Snapshot != "/v1/streams/live/api/snapshot.jpg" || len(rec.Play) != 1 || !strings.HasSuffix(rec.Play[0], "/live/api/") {
		t.Fatalf("stream record: %+v", rec)
	}
	code, body = httpGet(t, api+"/v1/streams/live/api")
	if code != 200 || !strings.Contains(body, `"path": "live/api"`) {
		t.Fatalf("/v1/streams/live/api: %d %s", code, body)
	}
	if code, body = httpGet(t, api+"/v1/streams/live/nobody"); code != 404 || !strings.Contains(body, `"error"`) {
		t.Fatalf("/v1/streams/live/nobody: %d %s", code, body)
	}
	if code, body = httpGet(t, api+"/v1/streams?local=1"); code != 200 || strings.Contains(body, `"streams"`) || !strings.Contains(body, `"edge"`) {
		t.Fatalf("/v1/streams?local=1: %d %s", code, body)
	}
	if code, body = httpGet(t, api+"/v1/sources"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("/v1/sources: %d %s", code, body)
	}
	// Kick the publisher.
	req, _ := http.NewRequest(http.MethodDelete, api+"/v1/streams/live/api", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("kick: %d", resp.StatusCode)
	}
	if err := cam.Wait(); err == nil {
		t.Fatal("the kicked publisher did not see its session end")
	}
	req, _ = http.NewRequest(http.MethodDelete, api+"/v1/streams/live/nobody", nil)
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != 404 {
		t.Fatalf("kick unknown: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}
