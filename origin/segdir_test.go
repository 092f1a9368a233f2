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
	if v := o.windowBytes(); v <= 0 {
		t.Errorf("window bytes in memory %d while writing a segment", v)
	}
	o.Close()
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("process folder left after Close: %v", err)
	}
}
