package testkit

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteTempFile writes data to a file called name, with permissions perm, in
// a new temporary directory of the test, and returns the file's path.
func WriteTempFile(t testing.TB, name string, data []byte, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, perm); err != nil {
		t.Fatal(err)
	}
	return p
}
