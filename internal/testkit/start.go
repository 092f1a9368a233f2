package testkit

import "testing"

// StartRefused calls start, which must fail, and returns its error for the
// test to look into. When start succeeds, StartRefused calls stop and fails
// the test.
func StartRefused(t testing.TB, start func() error, stop func()) error {
	t.Helper()
	err := start()
	if err == nil {
		stop()
		t.Fatal("Start succeeded, want an error")
	}
	return err
}
