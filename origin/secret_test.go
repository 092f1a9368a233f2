package origin

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/streamgrid/streamgrid/internal/hlsproto"
)

// With a secret, the origin serves only requests carrying it (the caches'):
// anything else gets 403, counted, before the path is even looked at.
func TestSecretRequired(t *testing.T) {
	const secret = "cluster-secret-0123456789"
	b := startBus(t, time.Second)
	o := b.origin("o1", func(o *Origin) { o.Secret = secret })
	url := "http://" + o.HTTPAddr().String()
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	for _, tc := range []struct {
		name, path, header, body string
		code                     int
	}{
		{"no header", "/_streams", "", "", http.StatusForbidden},
		{"wrong secret", "/_streams", "cluster-secret-0123456788", "", http.StatusForbidden},
		{"prefix of the secret", "/_streams", secret[:10], "", http.StatusForbidden},
		{"no header, playlist", "/live/cam1/index.m3u8", "", "", http.StatusForbidden},
		{"no header, bad path", "/../etc/passwd", "", "", http.StatusForbidden},
		{"secret", "/_streams", secret, "", http.StatusOK},
		{"secret, unknown stream", "/live/cam1/index.m3u8", secret, "", http.StatusNotFound},
		{"secret, a body", "/live/cam1/index.m3u8", secret, "x", http.StatusRequestEntityTooLarge},
	} {
		req, _ := http.NewRequest(http.MethodGet, url+tc.path, strings.NewReader(tc.body))
		if tc.body == "" {
			req.Body = nil
		}
		if tc.header != "" {
			req.Header.Set(hlsproto.HeaderAuth, tc.header)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		res.Body.Close()
		if res.StatusCode != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, res.StatusCode, tc.code)
		}
	}
	var m dto.Metric
	if err := o.m.requests.WithLabelValues("unauthorized").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 5 {
		t.Errorf("unauthorized requests counted %v, want 5", got)
	}
}
