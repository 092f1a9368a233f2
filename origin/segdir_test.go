package origin

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// With SegmentDir set, finished segments are files in the muxer's own
// folder, served from there; the folders of gone processes are removed at
// Start, and the process's own folder at Close.
func TestSegmentsOnDisk(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	stale := []string{"o1-999999999-a", "o1-" + strconv.Itoa(os.Getpid()) + "-b"} // a gone pid; this pid (a restarted container)
	kept := []string{"o1-1-c", "o2-999999999-d", "o1-notapid"}                    // a live process; another node; not ours
	for _, d := range append(append([]string{}, stale...), kept...) {
		if err := os.MkdirAll(filepath.Join(dir, d, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	c := loadClip(t)
	b := startBus(t, 3*time.Second)
	o := b.origin("o1", func(o *Origin) { o.SegmentDir = dir })
	for _, d := range stale {
		if _, err := os.Stat(filepath.Join(dir, d)); !os.IsNotExist(err) {
			t.Errorf("stale folder %s not removed: %v", d, err)
		}
	}
	for _, d := range kept {
		if _, err := os.Stat(filepath.Join(dir, d)); err != nil {
			t.Errorf("folder %s removed: %v", d, err)
		}
	}
	root := o.segRoot
	if filepath.Dir(root) != dir {
		t.Fatalf("process folder %q not under %q", root, dir)
	}
	startLive(t, b, o, c, 30*time.Second)
	u := base(o, camPath)
	var uri string
	testkit.WaitFor(t, 10*time.Second, "two real segments listed", func() bool {
		pl, _ := mediaPlaylist(t, u+"video1_stream.m3u8")
		var real []string
		for _, s := range pl.Segments {
			if !s.Gap {
				real = append(real, s.URI)
			}
		}
		if len(real) < 2 {
			return false
		}
		uri = real[0]
		return true
	})
	files, err := filepath.Glob(filepath.Join(root, "*", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no segment files under %s: %v", root, err)
	}
	r := get(t, u+uri)
	if r.code != http.StatusOK || len(r.body) < 8 || !bytes.Equal(r.body[4:8], []byte("moof")) {
		t.Fatalf("segment %s from disk: %d, %d bytes", uri, r.code, len(r.body))
	}
	if v, _ := o.windowBytes(); v <= 0 {
		t.Errorf("window bytes in memory %d while writing a segment", v)
	}
	o.Close()
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("process folder left after Close: %v", err)
	}
}

// segment_store auto: only the builtin muxer's segments go to disk; a
// second origin of the same node in this process keeps the first's folder;
// a folder that cannot be made keeps segments in memory instead of failing.
func TestSegmentsAuto(t *testing.T) {
	dir := t.TempDir()
	r1, err := segmentRoot(dir, "o1")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := segmentRoot(dir, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r1); err != nil || r1 == r2 {
		t.Fatalf("a second origin o1 in this process removed the first's folder %s (second %s): %v", r1, r2, err)
	}
	for _, tc := range []struct {
		auto, builtin, onDisk bool
	}{{true, true, true}, {true, false, false}, {false, false, true}, {false, true, true}} {
		o := &Origin{segRoot: r1, SegmentAuto: tc.auto}
		d, err := o.segmentDir("cam", tc.builtin)
		if err != nil || (d != "") != tc.onDisk || tc.onDisk && filepath.Dir(d) != r1 {
			t.Errorf("auto %v, builtin muxer %v: folder %q, %v", tc.auto, tc.builtin, d, err)
		}
	}

	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBus(t, 3*time.Second)
	o := b.origin("o2", func(o *Origin) { o.SegmentDir, o.SegmentAuto = notDir, true })
	if o.segRoot != "" {
		t.Fatalf("segment folder %q under a file", o.segRoot)
	}
	strict := &Origin{Node: "o3", HTTPAddress: "127.0.0.1:0", SegmentDir: notDir, Log: testkit.Logger(t)}
	strict.NC, strict.Registry = b.client()
	if err := strict.Start(); err == nil {
		strict.Close()
		t.Fatal("segment_store disk started without its folder")
	}
}
