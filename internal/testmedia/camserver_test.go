package testmedia

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// camServerPlayed is what a test reader got from a CameraServer.
type camServerPlayed struct {
	mu     sync.Mutex
	pts    []int64
	stamps []time.Time
	idr    int
	audio  int
	errs   []error
}

func (p *camServerPlayed) frames() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pts)
}

// decoded takes a depacketizer's result: nothing while it waits for more
// packets (any of wait), the error if it failed, else record, all under the lock.
func (p *camServerPlayed) decoded(err error, record func(), wait ...error) {
	for _, w := range wait {
		if errors.Is(err, w) {
			return
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.errs = append(p.errs, err)
		return
	}
	record()
}

// playCameraServer reads rawURL with a gortsplib client until want video
// access units have arrived or a deadline passes.
func playCameraServer(rawURL string, protocol gortsplib.Protocol, want int) (*camServerPlayed, error) {
	u, err := base.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &protocol}
	if err := c.Start(); err != nil {
		return nil, err
	}
	defer c.Close()

	desc, _, err := c.Describe(u)
	if err != nil {
		return nil, fmt.Errorf("DESCRIBE: %w", err)
	}
	var vf *format.H264
	vm := desc.FindFormat(&vf)
	var af *format.MPEG4Audio
	am := desc.FindFormat(&af)
	if vm == nil || am == nil {
		return nil, errors.New("no H264 or no AAC track")
	}
	vdec, err := vf.CreateDecoder()
	if err != nil {
		return nil, err
	}
	adec, err := af.CreateDecoder()
	if err != nil {
		return nil, err
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		return nil, fmt.Errorf("SETUP: %w", err)
	}

	played := &camServerPlayed{}
	c.OnPacketRTP(vm, vf, func(pkt *rtp.Packet) {
		// every packet goes through PacketPTS: the time decoder starts on a
		// packet carrying SPS, PPS or the start of an IDR, not on the last one
		// of an access unit
		pts, ptsOK := c.PacketPTS(vm, pkt)
		au, err := vdec.Decode(pkt)
		played.decoded(err, func() {
			if !ptsOK {
				return // before the first random access
			}
			played.pts = append(played.pts, pts)
			if ts, ok := AUTimestamp(au); ok {
				played.stamps = append(played.stamps, ts)
			}
			if h264.IsRandomAccess(au) {
				played.idr++
			}
		}, rtph264.ErrMorePacketsNeeded, rtph264.ErrNonStartingPacketAndNoPrevious)
	})
	c.OnPacketRTP(am, af, func(pkt *rtp.Packet) {
		aus, err := adec.Decode(pkt)
		played.decoded(err, func() { played.audio += len(aus) }, rtpmpeg4audio.ErrMorePacketsNeeded)
	})
	if _, err := c.Play(nil); err != nil {
		return nil, fmt.Errorf("PLAY: %w", err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for played.frames() < want {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("got %d video frames, want %d (errors %v)", played.frames(), want, played.errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return played, nil
}

func checkCameraServerPlayed(t *testing.T, p *camServerPlayed, clip *Clip) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, err := range p.errs {
		t.Errorf("decode: %v", err)
	}
	interval := durationToTicks(clip.FrameInterval(), 90000)
	for i := 1; i < len(p.pts); i++ {
		if d := p.pts[i] - p.pts[i-1]; d != interval {
			t.Fatalf("frame %d: PTS step %d, want %d", i, d, interval)
		}
	}
	if len(p.stamps) != len(p.pts) {
		t.Errorf("%d of %d frames carry an SEI stamp", len(p.stamps), len(p.pts))
	}
	for i := 1; i < len(p.stamps); i++ {
		if !p.stamps[i].After(p.stamps[i-1]) {
			t.Fatalf("stamp %d not after the previous one", i)
		}
	}
	if p.idr < 1 || p.audio < 1 {
		t.Errorf("%d IDR, %d audio frames", p.idr, p.audio)
	}
}

func TestCameraServerTCP(t *testing.T) {
	testkit.Slow(t)
	t.Parallel()
	clip := mustLoad(t)
	// a short GOP-aligned loop, so the test also crosses a loop boundary
	clip = clip.Head(1)
	srv := &CameraServer{
		Address:  "127.0.0.1:0",
		Path:     "/stream1/",
		User:     "admin",
		Pass:     "s3cr:t@",
		Clip:     clip,
		StampSEI: true,
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if u.Path != "/stream1" || u.User.Username() != "admin" || u.Host != srv.Addr().String() {
		t.Fatalf("URL %s", srv.URL())
	}

	// two readers at once: both get the live stream
	var wg sync.WaitGroup
	played := make([]*camServerPlayed, 2)
	errs := make([]error, 2)
	for i := range played {
		wg.Go(func() {
			played[i], errs[i] = playCameraServer(srv.URL(), gortsplib.ProtocolTCP, 2*len(clip.Video)+5)
		})
	}
	wg.Wait()
	for i, p := range played {
		if errs[i] != nil {
			t.Fatalf("reader %d: %v", i, errs[i])
		}
		checkCameraServerPlayed(t, p, clip)
	}

	srv.Close()
	srv.Close() // idempotent
}

func TestCameraServerUDP(t *testing.T) {
	testkit.Slow(t)
	t.Parallel()
	clip := mustLoad(t)
	var srv *CameraServer
	for attempt := 0; ; attempt++ {
		rtpPort := 20000 + 2*rand.IntN(15000)
		srv = &CameraServer{
			Address:        "127.0.0.1:0",
			UDPRTPAddress:  "127.0.0.1:" + strconv.Itoa(rtpPort),
			UDPRTCPAddress: "127.0.0.1:" + strconv.Itoa(rtpPort+1),
			Clip:           clip,
			StampSEI:       true,
		}
		err := srv.Start()
		if err == nil {
			break
		}
		if attempt == 20 {
			t.Fatal(err)
		}
	}
	defer srv.Close()
	if u, _ := url.Parse(srv.URL()); u.Path != "/stream1" || u.User != nil {
		t.Fatalf("URL %s", srv.URL())
	}
	played, err := playCameraServer(srv.URL(), gortsplib.ProtocolUDP, 30)
	if err != nil {
		t.Fatal(err)
	}
	checkCameraServerPlayed(t, played, clip)
}

func TestCameraServerRefuses(t *testing.T) {
	srv := &CameraServer{Address: "127.0.0.1:0", Path: "cam/main", User: "u", Pass: "p"}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := srv.Addr().String()

	describe := func(rawURL string) error {
		u, err := base.ParseURL(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		tcp := gortsplib.ProtocolTCP
		c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _, err = c.Describe(u)
		return err
	}
	for _, tc := range []struct {
		url  string
		code base.StatusCode // 0: any error
	}{
		{"rtsp://" + addr + "/cam/main", base.StatusUnauthorized},
		{"rtsp://u:p@" + addr + "/cam/other", base.StatusNotFound},
		{"rtsp://u:wrong@" + addr + "/cam/main", 0},
	} {
		err := describe(tc.url)
		if err == nil {
			t.Errorf("%s: DESCRIBE succeeded", tc.url)
			continue
		}
		var bad liberrors.ErrClientBadStatusCode
		if tc.code != 0 && (!errors.As(err, &bad) || bad.Code != tc.code) {
			t.Errorf("%s: %v, want status %d", tc.url, err, tc.code)
		}
	}
	if err := describe(srv.URL()); err != nil {
		t.Errorf("DESCRIBE with credentials: %v", err)
	}

	bad := &CameraServer{Address: "127.0.0.1:0", UDPRTPAddress: "127.0.0.1:30000"}
	if err := bad.Start(); err == nil {
		bad.Close()
		t.Error("Start accepted an RTP address without an RTCP address")
	}
	bad.Close() // harmless on a server that never started
}
