package testkit

import (
	"errors"
	"io"
	"testing"
)

// ReadToEOF calls read (an mpegts.Reader's Read, say) until it returns
// io.EOF, failing the test on any other error.
func ReadToEOF(t testing.TB, read func() error) {
	t.Helper()
	for {
		err := read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
