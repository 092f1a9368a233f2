package edge

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/sdpunmarshaler"
	"github.com/prometheus/client_golang/prometheus"
)

// FuzzRTSPAnnounce parses an RTSP request and its SDP body the way the edge
// receives an ANNOUNCE (gortsplib's request reader and SDP parser, as the
// server calls them), then runs the edge's side: track selection, the
// normalizer it would build and the sizes the API would show.
func FuzzRTSPAnnounce(f *testing.F) {
	c := loadClip(f, "h264_aac.ts")
	for _, audio := range []string{"", "mpeg4", "latm"} {
		desc := clipDesc(c, audio)
		body, err := desc.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		req := base.Request{Method: base.Announce, URL: mustURL(f, "rtsp://127.0.0.1:8554/live/cam1"),
			Header: base.Header{"CSeq": base.HeaderValue{"2"}, "Content-Type": base.HeaderValue{"application/sdp"}}, Body: body}
		b, err := req.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("ANNOUNCE rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 12\r\n\r\nv=0\r\nm=video"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req base.Request
		if err := req.Unmarshal(bufio.NewReader(bytes.NewReader(data))); err != nil {
			return
		}
		_, _ = rtmpCredentials(&url.URL{RawQuery: req.URL.RawQuery})
		ssd, err := sdpunmarshaler.Unmarshal(req.Body)
		if err != nil {
			return
		}
		var desc description.Session
		if err := desc.Unmarshal2(ssd); err != nil {
			return
		}
		if len(desc.Medias) > maxSDPMedias {
			return // refused with 400 before anything else
		}
		tracks, _ := rtpTracks(&desc)
		if len(tracks) > maxTracks {
			t.Fatalf("%d tracks, at most %d", len(tracks), maxTracks)
		}
		if len(tracks) == 0 {
			return
		}
		infos := trackInfos(tracks)
		if _, err := newNormalizer(infos, 1); err != nil {
			return
		}
		for _, info := range infos {
			videoSize(info)
		}
	})
}

func mustURL(f *testing.F, s string) *base.URL {
	u, err := base.ParseURL(s)
	if err != nil {
		f.Fatal(err)
	}
	return u
}

// memConn is a net.Conn over a byte slice: reads come from in, writes are
// discarded, deadlines are ignored.
type memConn struct {
	in io.Reader
}

func (c *memConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// recordRTMPClient captures what a real RTMP publisher (gortmplib's client,
// publishing the test clip) sends to a server, for the seed corpus.
func recordRTMPClient(f *testing.F, path string) []byte {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var got bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		rec := &recordConn{Conn: conn, mu: &mu, buf: &got}
		sc := &gortmplib.ServerConn{RW: rec}
		if sc.Initialize() != nil || sc.AcceptConn() != nil {
			return
		}
		rd := &gortmplib.Reader{Conn: sc}
		if rd.Initialize() != nil {
			return
		}
		for range 50 { // a few media messages after the tracks
			if _, err := sc.Read(); err != nil {
				return
			}
		}
	}()
	cl, err := dialRTMP(f, "rtmp://"+ln.Addr().String()+"/"+path, true, nil)
	if err != nil {
		f.Fatal(err)
	}
	c := loadClip(f, "h264_aac.ts")
	_, sps, pps := c.params()
	tr := &gortmplib.Track{Codec: &rtmpcodecs.H264{SPS: sps, PPS: pps}}
	w := &gortmplib.Writer{Conn: cl, Tracks: []*gortmplib.Track{tr}}
	if err := w.Initialize(); err != nil {
		f.Fatal(err)
	}
	for _, fr := range c.video {
		d := time.Duration(fr.dts) * time.Second / 90000
		if err := w.WriteH264(tr, time.Duration(fr.pts)*time.Second/90000, d, fr.au); err != nil {
			break
		}
	}
	cl.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return bytes.Clone(got.Bytes())
}

type recordConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// FuzzRTMPPublisher plays a whole RTMP publisher connection (handshake,
// chunk stream, connect/publish commands, media messages) into the edge's
// read path as the edge drives it: the deadlineConn with its byte
// allowance, rtmpConn under gortmplib's server connection, the credentials
// in the stream name, the probe and the edge's track detection, then the
// read loop with its fast path until the data ends.
func FuzzRTMPPublisher(f *testing.F) {
	f.Add(recordRTMPClient(f, "live/cam1"))
	f.Add(recordRTMPClient(f, "live/cam1?user=admin&pass=adminpw"))
	f.Add([]byte{3})
	f.Fuzz(func(t *testing.T, data []byte) {
		dc := &deadlineConn{Conn: &memConn{in: bytes.NewReader(data)}, idle: time.Second,
			setup: time.Now().Add(time.Hour), limit: rtmpHandshakeBytes}
		rc := newRTMPConn(dc)
		sc := &gortmplib.ServerConn{RW: rc}
		if sc.Initialize() != nil {
			return
		}
		rc.ack = acknowledger(sc)
		if sc.AcceptConn() != nil {
			return
		}
		if !sc.Publish || sc.URL == nil {
			return
		}
		_ = strings.Trim(sc.URL.Path, "/")
		rtmpCredentials(sc.URL)
		dc.limit = dc.total + rtmpSetupBytes
		if sc.AcceptAction() != nil {
			return
		}
		rd, multitrack, err := newRTMPReader(sc)
		if err != nil {
			return
		}
		ing := &rtmpIngest{multitrack: multitrack}
		tracks, _, err := ing.tracks(rd)
		if err != nil || len(tracks) == 0 {
			return
		}
		if _, err := newNormalizer(tracks, 1); err != nil {
			t.Fatalf("tracks the edge accepted do not build a normalizer: %v", err)
		}
		// The media go nowhere: the callbacks that feed a stream are replaced.
		frames := 0
		video := func(_, _ time.Duration, au [][]byte) {
			for _, nalu := range au {
				frames += len(nalu)
			}
		}
		audio := func(_ time.Duration, frame []byte) { frames += len(frame) }
		for _, tr := range rd.Tracks() {
			switch tr.Codec.(type) {
			case *rtmpcodecs.H264:
				rd.OnDataH264(tr, video)
			case *rtmpcodecs.H265:
				rd.OnDataH265(tr, video)
			case *rtmpcodecs.MPEG4Audio:
				rd.OnDataMPEG4Audio(tr, audio)
			case *rtmpcodecs.Opus:
				rd.OnDataOpus(tr, audio)
			}
		}
		if ing.fastVideo != nil {
			ing.fastVideo = video
		}
		if ing.fastAAC != nil {
			ing.fastAAC = audio
		}
		ing.s = &stream{mDecodeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "fuzz_decode_errors"})}
		dc.setup, dc.limit = time.Time{}, 0
		_ = ing.readLoop(rd, rc)
	})
}
