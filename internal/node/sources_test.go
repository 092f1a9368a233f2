package node

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// TestSourcesAPI: /v1/sources reports each camera pull's state: a camera
// that plays is held and pulling; one that refuses connections counts
// retries and names its last error, without the camera's credentials.
func TestSourcesAPI(t *testing.T) {
	cam := &testmedia.CameraServer{Address: "127.0.0.1:0", Path: "stream1", User: "admin", Pass: "s3cret"}
	if err := cam.Start(); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	c := allInOneConfig(t)
	c.Sources = []config.Source{
		{Name: "cams/ok", URL: cam.URL(), Transport: "tcp", BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		{Name: "cams/down", URL: "rtsp://admin:s3cret@" + dead + "/x", Transport: "tcp", BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
	}
	n := startNode(t, c, RoleRun)
	api := "http://" + n.Addrs().API

	type source struct {
		Node       string `json:"node"`
		Name       string `json:"name"`
		URL        string `json:"url"`
		Held       bool   `json:"held"`
		Pulling    bool   `json:"pulling"`
		Reconnects uint64 `json:"reconnects"`
		LastError  string `json:"last_error"`
	}
	var got map[string]source
	var body string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var code int
		code, body = httpGet(t, api+"/v1/sources")
		var list []source
		if code == 200 && json.Unmarshal([]byte(body), &list) == nil {
			got = map[string]source{}
			for _, s := range list {
				got[s.Name] = s
			}
			if ok, down := got["cams/ok"], got["cams/down"]; ok.Held && ok.Pulling && down.Held && down.Reconnects >= 2 && down.LastError != "" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/v1/sources: %s", body)
		}
	}
	if strings.Contains(body, "s3cret") || strings.Contains(body, "admin:") {
		t.Fatalf("/v1/sources shows credentials: %s", body)
	}
	if got["cams/ok"].Node != "aio" {
		t.Fatalf("source node: %+v", got["cams/ok"])
	}
	t.Logf("cams/down: %d retries, last error %q", got["cams/down"].Reconnects, got["cams/down"].LastError)
	// The pulled camera is a stream of the cluster.
	if code, body := httpGet(t, api+"/v1/streams/cams/ok"); code != 200 || !strings.Contains(body, `"protocol": "pull"`) {
		t.Fatalf("/v1/streams/cams/ok: %d %s", code, body)
	}
}
