package version

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

func TestUnstamped(t *testing.T) {
	if v := String(); !strings.HasPrefix(v, "dev") {
		t.Fatalf("unstamped version %q", v)
	}
}

// TestStamped builds a program with -ldflags -X, as deploy/Dockerfile does,
// and checks that String reports the stamp.
func TestStamped(t *testing.T) {
	testkit.Slow(t) // builds a binary
	bin := filepath.Join(t.TempDir(), "stamp")
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X github.com/streamgrid/streamgrid/internal/version.Version=v9.8.7", "./testdata/stamp")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "v9.8.7" {
		t.Fatalf("stamped binary says %q", out)
	}
}
